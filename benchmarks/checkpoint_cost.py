"""Checkpoint cost: LoRA checkpoint bytes vs the full model, and the wall time of checkpointing
at every evaluation.

    python -m benchmarks.checkpoint_cost            # SmolLM2-135M, quickstart settings, ~5 min
    python -m benchmarks.checkpoint_cost --quick    # tiny Llama built from a config, seconds

Bytes: the product's `fit` runs one step per LoRA setting and writes a real checkpoint
(`checkpointing.save`); adapter_model.safetensors (and the whole checkpoint folder) are compared
with the base model's safetensors (the materialized fp32 cache). Target: adapter <= 2% of the
model at r <= 16.
Time: `fit` at the quickstart's evaluation interval (every 10 steps), with real checkpoints (save +
a copy into a storage folder, which is what Tune does with a local storage_path) vs a no-op
save, interleaved (ABBA). Reported as the paired wall-time difference and as the time measured
inside the save and copy calls. Target: <= 3% of wall time.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.common import median

NAME = "checkpoint_cost"
BYTES_TARGET = 0.02
TIME_TARGET = 0.03


# Llama-family shapes (hidden, intermediate, layers, heads, kv heads, vocab, tied embeddings)
SHAPES = {
    "SmolLM2-135M": (576, 1536, 30, 9, 3, 49152, True),
    "Llama-2-7B": (4096, 11008, 32, 32, 32, 32000, False),
    "Llama-3-8B": (4096, 14336, 32, 32, 8, 128256, False),
}


def adapter_share_by_shape() -> list[dict[str, Any]]:
    """LoRA parameters / model parameters for real model shapes, built on the meta device (no
    weights). At one dtype this is the bytes ratio: how the share falls as models get wider."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    rows = []
    for name, (hidden, inter, layers, heads, kv, vocab, tied) in SHAPES.items():
        config = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            vocab_size=vocab,
            tie_word_embeddings=tied,
        )
        for targets in (["q_proj", "v_proj"], "all-linear"):
            for r in (8, 16):
                with torch.device("meta"):
                    model = LlamaForCausalLM(config)
                    total = sum(p.numel() for p in model.parameters())
                    peft_model = get_peft_model(
                        model, LoraConfig(r=r, target_modules=targets, task_type="CAUSAL_LM")
                    )
                lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
                rows.append(
                    {
                        "model": name,
                        "r": r,
                        "targets": targets if isinstance(targets, str) else "/".join(targets),
                        "model_params": total,
                        "adapter_params": lora,
                        "adapter_share": lora / total,
                    }
                )
    return rows


def folder_bytes(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def checkpoint_sizes(plan: Any, lora: dict[str, Any]) -> dict[str, Any]:
    """Run `fit` for one step with this LoRA setting and measure the checkpoint it writes."""
    from trainables import checkpointing, loop
    from trainables.config import merge_trial_config

    spec = merge_trial_config(
        plan.spec, {"train": {"max_steps": 1, "eval_every_steps": 1}, "lora": lora}
    )
    sizes: dict[str, Any] = {}

    def report(metrics: dict[str, float], folder: Path) -> None:
        adapter = folder / checkpointing.ADAPTER_DIR
        sizes.update(
            {
                "adapter_model_bytes": (adapter / "adapter_model.safetensors").stat().st_size,
                "trainer_state_bytes": (folder / checkpointing.STATE_FILE).stat().st_size,
                "checkpoint_bytes": folder_bytes(folder),
            }
        )

    loop.fit(spec, plan.data, plan.pad_id, report)
    return sizes


class TimedCheckpoints:
    """The real save plus a copy into `storage` (Tune's local persist), each call timed."""

    def __init__(self, storage: Path) -> None:
        from trainables import checkpointing

        self.storage, self.real_save = storage, checkpointing.save
        self.save_s: list[float] = []
        self.persist_s: list[float] = []

    def save(self, folder: Path, **kwargs: Any) -> None:
        started = time.perf_counter()
        self.real_save(folder, **kwargs)
        self.save_s.append(time.perf_counter() - started)

    def report(self, metrics: dict[str, float], folder: Path) -> None:
        started = time.perf_counter()
        shutil.copytree(folder, self.storage / f"checkpoint_{len(self.persist_s):06d}")
        self.persist_s.append(time.perf_counter() - started)


def timed_fit(
    plan: Any, lora: dict[str, Any], steps: int, checkpoints: bool, storage: Path
) -> dict[str, Any]:
    from trainables import checkpointing, loop
    from trainables.config import merge_trial_config

    spec = merge_trial_config(
        plan.spec, {"train": {"learning_rate": 1e-3, "max_steps": steps}, "lora": lora}
    )
    timed = TimedCheckpoints(storage)
    save = timed.save if checkpoints else (lambda folder, **_: None)
    report = timed.report if checkpoints else (lambda *_: None)
    with common.patched(checkpointing, "save", save):
        started = time.perf_counter()
        last = loop.fit(spec, plan.data, plan.pad_id, report)
        wall = time.perf_counter() - started
    shutil.rmtree(storage, ignore_errors=True)
    return {
        "wall_s": wall,
        "save_s": sum(timed.save_s),
        "persist_s": sum(timed.persist_s),
        "checkpoints": len(timed.save_s),
        "steps": int(last["step"]),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, seconds (CI)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed fits per variant, interleaved with the other"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=20,
        help="steps per timed fit (the quickstart trial has 40; its evaluation "
        "and checkpoint interval, 10, is kept)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a 1-CPU trial)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")
    args = parser.parse_args(argv)
    command = common.command_line(argv, "benchmarks.checkpoint_cost")

    from orchestrator.config.loading import load_config
    from orchestrator.run.preflight import build_plan
    from trainables import modeling

    with (
        tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp,
        common.LoadSampler() as load,
        common.torch_threads(args.threads),
    ):
        work = Path(tmp)
        overrides: list[str] = []
        if args.quick:
            tiny = common.tiny_models().make_tiny_causal_lm(work / "tiny-lm")
            overrides = [f"model.path={tiny}", "model.gguf_file=null"]
        quickstart = common.ROOT / "examples" / "quickstart.yaml"
        base = load_config(quickstart)
        model_bytes = folder_bytes(
            Path(modeling.materialize(load_config(quickstart, overrides).model)), "*.safetensors"
        )
        # Sizes: one step per setting, on a small validation slice (its size does not matter).
        plan = build_plan(load_config(quickstart, overrides + ["data.max_eval_examples=8"]))
        size_rows = []
        for r in (4, 8, 16):
            for targets in (base.lora.target_modules, "all-linear"):
                lora = {"r": r, "alpha": 2 * r, "target_modules": targets}
                sizes = checkpoint_sizes(plan, lora)
                size_rows.append(
                    {
                        "r": r,
                        "targets": targets if isinstance(targets, str) else "/".join(targets),
                        **sizes,
                        "adapter_ratio": sizes["adapter_model_bytes"] / model_bytes,
                        "checkpoint_ratio": sizes["checkpoint_bytes"] / model_bytes,
                    }
                )
        # Time: the quickstart's trial (evaluation interval, LoRA setting); imports are warm
        # from the runs above.
        plan = build_plan(load_config(quickstart, overrides))
        lora = base.lora.model_dump()
        runs: dict[str, list[dict[str, Any]]] = {"checkpoint": [], "noop": []}
        for i, variant in common.interleaved(("checkpoint", "noop"), args.repeats):
            runs[variant].append(
                timed_fit(plan, lora, args.steps, variant == "checkpoint", work / "storage")
            )
            print(f"{variant} #{i + 1}: {runs[variant][-1]}", flush=True)

    payload = summarize(size_rows, model_bytes, runs)
    payload["adapter_share_by_shape"] = adapter_share_by_shape()
    print("\nadapter share by model shape (parameter counts on the meta device)")
    print(common.table(payload["adapter_share_by_shape"]))
    print(
        f"\ncheckpoint bytes vs the full model ({model_bytes / 2**20:.1f} MiB of safetensors; "
        f"{'tiny model, quick' if args.quick else 'SmolLM2-135M fp32'})"
    )
    print(
        common.table(
            size_rows,
            [
                "r",
                "targets",
                "adapter_model_bytes",
                "adapter_ratio",
                "checkpoint_bytes",
                "checkpoint_ratio",
            ],
        )
    )
    print(
        f"\nwall time of fit, {runs['checkpoint'][0]['steps']} steps, "
        f"{runs['checkpoint'][0]['checkpoints']} checkpoints (medians of {args.repeats})"
    )
    print(common.table(payload["time_rows"]))
    t, targets = payload["time"], payload["targets"]

    def met(key: str) -> str:
        return "met" if targets[key]["met"] else "MISSED"

    print(
        f"\ncheckpointing share of wall time: {t['measured_share']:.2%} measured inside "
        f"save+copy ({t['seconds_per_checkpoint']:.3f}s per checkpoint); paired wall "
        f"difference {t['paired_wall_overhead']:+.2%} (pairs: "
        + ", ".join(f"{v:+.1%}" for v in t["paired_wall_overhead_each"])
        + f"; no-op runs alone differ by {t['noop_wall_spread']:.1%}: the noise floor)\n"
        f"target <= {TIME_TARGET:.0%}: {met('time')}\n"
        f"adapter bytes at r<=16 on {size_rows[0]['targets']}: max "
        f"{targets['bytes']['value']:.2%} of the model (target <= {BYTES_TARGET:.0%}: "
        f"{met('bytes')}); all-linear: max {targets['bytes_all_linear']['value']:.2%}"
    )
    out = args.out or common.default_out(NAME, args.quick)
    common.write_result(
        out,
        name=NAME,
        command=command,
        quick=args.quick,
        load=load,
        payload={
            **payload,
            "repeats": args.repeats,
            "torch_threads": args.threads,
            "workload": "tiny Llama (quick)"
            if args.quick
            else f"SmolLM2-135M-Instruct, examples/quickstart.yaml ({args.steps} steps, evaluation "
            "and checkpoint every 10)",
        },
    )
    return payload


def summarize(
    size_rows: list[dict[str, Any]], model_bytes: int, runs: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    ckpt, noop = runs["checkpoint"], runs["noop"]
    paired = [(c["wall_s"] - n["wall_s"]) / n["wall_s"] for c, n in zip(ckpt, noop, strict=True)]
    measured = [(c["save_s"] + c["persist_s"]) / c["wall_s"] for c in ckpt]
    time_rows = [
        {
            "variant": name,
            "n": len(rs),
            **{k: median([r[k] for r in rs]) for k in ("wall_s", "save_s", "persist_s")},
        }
        for name, rs in runs.items()
    ]
    per_checkpoint = median([(c["save_s"] + c["persist_s"]) / c["checkpoints"] for c in ckpt])
    quickstart_rows = [r for r in size_rows if r["targets"] != "all-linear"]
    worst = max(r["adapter_ratio"] for r in quickstart_rows)
    return {
        "model_safetensors_bytes": model_bytes,
        "sizes": size_rows,
        "time_rows": time_rows,
        "time": {
            "measured_share": median(measured),
            "paired_wall_overhead": median(paired),
            "paired_wall_overhead_each": paired,
            # How much two no-op runs differ: the noise floor of the paired difference.
            "noop_wall_spread": max(n["wall_s"] for n in noop) / min(n["wall_s"] for n in noop) - 1,
            "seconds_per_checkpoint": per_checkpoint,
            "runs": runs,
        },
        "targets": {
            "bytes": {
                **common.verdict(worst, BYTES_TARGET),
                "what": f"adapter_model.safetensors / model safetensors, r<=16, "
                f"targets {quickstart_rows[0]['targets']}",
            },
            "bytes_all_linear": {
                **common.verdict(
                    max(r["adapter_ratio"] for r in size_rows if r["targets"] == "all-linear"),
                    BYTES_TARGET,
                ),
                "what": "the same with target_modules all-linear (the default)",
            },
            "time": {
                **common.verdict(median(measured), TIME_TARGET),
                "what": "seconds inside save + copy / wall time of fit (median)",
            },
        },
    }


if __name__ == "__main__":
    main()
