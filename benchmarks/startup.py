"""Trial start-up: a trial's time from its start to its first optimizer step, naive vs ours.

    python -m benchmarks.startup            # SmolLM2-135M (GGUF) on the quickstart data, ~6 min
    python -m benchmarks.startup --quick    # tiny Llama built from a config, seconds

naive: every trial loads the GGUF with `from_pretrained(gguf_file=...)` (dequantizing it) and
       reads and tokenizes the data itself.
ours:  the driver tokenizes once and `materialize` converts the GGUF once per node into a
       safetensors cache; a trial unpickles the handed-over data (what the object store gives
       it) and loads the cache.
Both then run the product's `fit` (LoRA set-up, optimizer, first batch) up to the end of the
first optimizer step. Measured in-process (interleaved naive/ours, medians) and inside real Ray
Tune trials (one trial per Tuner, data passed with `tune.with_parameters` as `launch` does).
The per-node/per-sweep one-time costs of ours (conversion, tokenization) are reported apart.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import common
from benchmarks.common import median
from trainables.config import TrialSpec

NAME = "startup"
TARGET = 0.10  # ours / naive
SAMPLED = {"train": {"learning_rate": 1e-3}, "lora": {"r": 8}}
# "reused actor": the second of two trials on one actor (`reuse_actors=True`, the product's
# default since this benchmark's run, except for PBT); "fresh actor": a process's first trial.
RAY_VARIANTS = ("naive", "ours", "naive reused actor", "ours reused actor")


class FirstStep(Exception):
    """Raised right after the first optimizer step to end the trial there."""


@contextlib.contextmanager
def stop_at_first_step(marks: dict[str, float], load_model: Any = None) -> Iterator[None]:
    """Stamp `model_loaded`, `first_batch` (the first micro-batch is about to be built: set-up
    is over) and `first_step` in `marks`; raise FirstStep after the first optimizer step.

    `load_model` replaces `modeling.load_model` (the naive GGUF loader); `fit` is untouched.
    """
    from trainables import loop, modeling

    real_step, real_collate = loop._optimizer_step, loop.collate
    loader = load_model or modeling.load_model

    def timed_load(*args: Any, **kwargs: Any) -> torch.nn.Module:
        model = loader(*args, **kwargs)
        marks["model_loaded"] = time.time()
        return model

    def timed_collate(*args: Any, **kwargs: Any) -> Any:
        marks.setdefault("first_batch", time.time())
        return real_collate(*args, **kwargs)

    def step_then_stop(*args: Any, **kwargs: Any) -> None:
        real_step(*args, **kwargs)
        marks["first_step"] = time.time()
        raise FirstStep

    with (
        common.patched(modeling, "load_model", timed_load),
        common.patched(loop, "collate", timed_collate),
        common.patched(loop, "_optimizer_step", step_then_stop),
    ):
        yield


def naive_load_model(
    model: Any,
    task: str,
    *,
    pad_token_id: int | None = None,
    dtype: torch.dtype = torch.float32,
    **_: Any,
) -> torch.nn.Module:
    """`from_pretrained` straight from the GGUF file, as a trial without the cache would."""
    from transformers import AutoModelForCausalLM

    from trainables import modeling

    kwargs = {"gguf_file": model.gguf_file} if model.gguf_file else {}
    lm = AutoModelForCausalLM.from_pretrained(
        modeling.resolve_model_path(model.path), dtype=dtype, **kwargs
    )
    if pad_token_id is not None and lm.config.pad_token_id is None:
        lm.config.pad_token_id = pad_token_id
    return lm


def naive_trial(
    spec: TrialSpec,
    sampled: dict[str, Any],
    base_dir: str,
    marks: dict[str, float] | None = None,
) -> dict[str, float]:
    """Read and tokenize the data, load the GGUF, train to the first optimizer step."""
    from transformers import AutoTokenizer

    from trainables import loop, modeling
    from trainables.config import merge_trial_config
    from trainables.data import prepare_data

    marks = marks or {"start": time.time()}
    trial = merge_trial_config(spec, sampled)
    kwargs = {"gguf_file": trial.model.gguf_file} if trial.model.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(
        modeling.resolve_model_path(trial.model.path), **kwargs
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = prepare_data(trial.data, trial.task, tokenizer, Path(base_dir))
    marks["data_ready"] = time.time()
    with stop_at_first_step(marks, naive_load_model), contextlib.suppress(FirstStep):
        loop.fit(trial, data, int(tokenizer.pad_token_id), lambda *_: None)
    return marks


def ours_trial(
    spec: TrialSpec, sampled: dict[str, Any], data_blob: bytes, pad_id: int
) -> dict[str, float]:
    """Unpickle the driver's tokenized data, load the materialized cache, first step."""
    from trainables import loop
    from trainables.config import merge_trial_config

    marks = {"start": time.time()}
    data = pickle.loads(data_blob)
    marks["data_ready"] = time.time()
    with stop_at_first_step(marks), contextlib.suppress(FirstStep):
        loop.fit(merge_trial_config(spec, sampled), data, pad_id, lambda *_: None)
    return marks


def import_heavy(marks: dict[str, float]) -> None:
    """A fresh trial process imports these first; stamped apart so the table shows it."""
    import peft  # noqa: F401
    import transformers.models.llama.modeling_llama  # noqa: F401

    marks["imports_done"] = time.time()


def phases(marks: dict[str, float]) -> dict[str, float]:
    """Seconds per phase. `step_s` is the first step's own compute (forward, backward, AdamW):
    the same work in both variants; `startup_s` is everything before it."""
    after_imports = marks.get("imports_done", marks["start"])
    return {
        "imports_s": after_imports - marks["start"],
        "data_s": marks["data_ready"] - after_imports,
        "model_load_s": marks["model_loaded"] - marks["data_ready"],
        "setup_s": marks["first_batch"] - marks["model_loaded"],
        "step_s": marks["first_step"] - marks["first_batch"],
        "startup_s": marks["first_batch"] - marks["start"],
        "to_first_step_s": marks["first_step"] - marks["start"],
    }


# --- inside real Ray Tune trials -------------------------------------------------------------


def ray_naive(config: dict[str, Any], *, spec: TrialSpec, base_dir: str, cache: str) -> None:
    from ray import tune

    os.environ["SWEEP_MODEL_CACHE"] = cache
    torch.set_num_threads(1)  # what run_trial gives a 1-CPU trial
    marks = {"start": time.time()}
    import_heavy(marks)
    marks = naive_trial(spec, config, base_dir, marks)
    tune.report({**marks, "pid": os.getpid()})


def ray_ours(
    config: dict[str, Any], *, spec: TrialSpec, data: Any, pad_id: int, cache: str
) -> None:
    """The product's trial entry (`run_trial`), stopped after its first optimizer step."""
    from ray import tune

    from trainables.tune_entry import run_trial

    os.environ["SWEEP_MODEL_CACHE"] = cache
    marks = {"start": time.time()}
    import_heavy(marks)
    marks["data_ready"] = marks["imports_done"]  # the data came with the call (object store)
    with stop_at_first_step(marks), contextlib.suppress(FirstStep):
        run_trial(config, spec=spec, data=data, pad_id=pad_id)
    tune.report({**marks, "pid": os.getpid()})


def run_in_ray(trainable: Any, storage: str, name: str, reuse: bool = False) -> dict[str, float]:
    """A trial in its own Tuner: a fresh actor (a process's first trial), or with
    `reuse`, the second of two trials run one after the other on one reused actor."""
    from ray import tune

    from benchmarks.timeline import Timeline

    timeline = Timeline()
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=SAMPLED,
        tune_config=tune.TuneConfig(
            num_samples=2 if reuse else 1, max_concurrent_trials=1, reuse_actors=reuse
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0, callbacks=[timeline]),
    )
    grid = tuner.fit()
    if grid.errors:
        raise RuntimeError(f"{name}: a trial failed: {grid.errors[0]}")
    reports = [grid[i].metrics or {} for i in range(len(grid))]
    marks: dict[str, Any] = max(reports, key=lambda m: m["start"])
    driver = timeline.trials[marks["trial_id"]]
    # Counted from the actor being up: that includes with_parameters' object-store fetch,
    # which happens before the function is entered, so both variants pay for their data.
    return {
        "actor_start_s": driver["started"] - driver["created"],
        "fetch_and_enter_s": marks["start"] - driver["started"],
        **phases(marks),
        "startup_s": marks["first_batch"] - driver["started"],
        "to_first_step_s": marks["first_step"] - driver["started"],
        "created_to_first_step_s": marks["first_step"] - driver["created"],
    }


# --- the benchmark ---------------------------------------------------------------------------


def build_config(quick: bool, work: Path) -> Any:
    from orchestrator.config.loading import load_config

    if not quick:
        return load_config(common.ROOT / "examples" / "quickstart.yaml")
    folder = common.tiny_models().make_tiny_causal_lm(work / "tiny-lm")
    return load_config(
        common.ROOT / "examples" / "quickstart.yaml",
        [f"model.path={folder}", "model.gguf_file=null"],
    )


def measure(
    quick: bool, work: Path, cache: str, repeats: int, ray_repeats: int
) -> tuple[
    dict[str, list[dict[str, float]]],
    dict[str, list[dict[str, float]]],
    dict[str, float],
    float | None,
]:
    """The driver's one-time work, then interleaved trials in-process and in Ray."""
    from orchestrator.run.preflight import build_plan
    from trainables import modeling

    cfg = build_config(quick, work)
    started = time.time()
    modeling.materialize(cfg.model)
    one_time = {"materialize_s": time.time() - started}
    started = time.time()
    plan = build_plan(cfg)
    one_time["tokenize_s"] = time.time() - started
    started = time.time()
    blob = pickle.dumps(plan.data, protocol=pickle.HIGHEST_PROTOCOL)
    one_time["pickle_data_s"] = time.time() - started
    one_time["data_bytes"] = len(blob)
    base_dir = str(cfg.base_dir)
    print(f"one-time (per node / per sweep): {one_time}", flush=True)

    ours_trial(plan.spec, SAMPLED, blob, plan.pad_id)  # warm-up: imports, page cache
    runs: dict[str, list[dict[str, float]]] = {"naive": [], "ours": []}
    for i, variant in common.interleaved(("naive", "ours"), repeats):
        marks = (
            naive_trial(plan.spec, SAMPLED, base_dir)
            if variant == "naive"
            else ours_trial(plan.spec, SAMPLED, blob, plan.pad_id)
        )
        runs[variant].append(phases(marks))
        print(f"in-process {variant} #{i + 1}: {runs[variant][-1]}", flush=True)

    ray_runs: dict[str, list[dict[str, float]]] = {v: [] for v in RAY_VARIANTS}
    ray_init_s = None
    if ray_repeats:
        from ray import tune

        with common.local_ray() as ray_init_s:
            trainables = {
                "naive": tune.with_parameters(
                    ray_naive, spec=plan.spec, base_dir=base_dir, cache=cache
                ),
                "ours": tune.with_parameters(
                    ray_ours, spec=plan.spec, data=plan.data, pad_id=plan.pad_id, cache=cache
                ),
            }
            for i, variant in common.interleaved(RAY_VARIANTS, ray_repeats):
                kind = variant.split()[0]
                ray_runs[variant].append(
                    run_in_ray(
                        trainables[kind],
                        str(work / "ray"),
                        f"{kind}-{i}-{len(variant)}",
                        reuse="reused" in variant,
                    )
                )
                print(f"ray {variant} #{i + 1}: {ray_runs[variant][-1]}", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    return runs, ray_runs, one_time, ray_init_s


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, seconds (CI)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="in-process trials per variant, interleaved (default 3; quick 1)",
    )
    parser.add_argument(
        "--ray-repeats",
        type=int,
        default=None,
        help="Ray trials per variant, interleaved (default 2; quick 1; 0 skips)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads in-process (a 1-CPU trial gets 1)"
    )
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    ray_repeats = args.ray_repeats if args.ray_repeats is not None else (1 if args.quick else 2)
    command = common.command_line(argv, "benchmarks.startup")
    with (
        tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp,
        common.LoadSampler() as load,
        common.torch_threads(args.threads),
    ):
        cache = str(Path(tmp) / "model-cache")  # cold: the one-time conversion is measured
        with common.environ("SWEEP_MODEL_CACHE", cache):
            runs, ray_runs, one_time, ray_init_s = measure(
                args.quick, Path(tmp), cache, repeats, ray_repeats
            )

    rows, payload = summarize(runs, ray_runs, one_time)
    print(
        f"\ntime from trial start to first optimizer step "
        f"({'tiny model, quick' if args.quick else 'SmolLM2-135M, quickstart data'}; "
        f"medians; torch threads {args.threads})"
    )
    columns = [
        "where",
        "variant",
        "n",
        "actor_start_s",
        "fetch_and_enter_s",
        "imports_s",
        "data_s",
        "model_load_s",
        "setup_s",
        "startup_s",
        "step_s",
        "to_first_step_s",
    ]
    print(common.table(rows, columns))
    print(
        "(ray trial: counted from the actor being up; actor_start_s is before that; startup_s "
        "is everything but step_s, the first step's own compute)"
    )
    for where, r in payload["ratios"].items():
        print(
            f"ours / naive, {where}: {r['to_first_step']:.3f} to the first step, "
            f"{r['startup_excluding_step_compute']:.3f} excluding the step's compute"
        )
    print(
        f"target <= {TARGET} (in-process, to the first step): "
        f"{'met' if payload['target']['met'] else 'MISSED'}; one-time cost "
        f"{one_time['materialize_s'] + one_time['tokenize_s']:.1f}s pays off after "
        f"{payload['break_even_trials']:.1f} trials"
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
            "repeats": repeats,
            "ray_repeats": ray_repeats,
            "torch_threads": args.threads,
            "ray_init_s": ray_init_s,
            "workload": "tiny Llama (quick)"
            if args.quick
            else "SmolLM2-135M-Instruct Q4_1 GGUF, examples/quickstart.yaml, LoRA r=8 q/v",
        },
    )
    return payload


def summarize(
    runs: dict[str, list[dict[str, float]]],
    ray_runs: dict[str, list[dict[str, float]]],
    one_time: dict[str, float],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    medians: dict[str, dict[str, float]] = {}
    for where, source in (("in-process", runs), ("ray trial", ray_runs)):
        for variant, samples in source.items():
            if samples:
                med = {k: median([s[k] for s in samples]) for k in samples[0]}
                medians[f"{where}/{variant}"] = med
                rows.append({"where": where, "variant": variant, "n": len(samples), **med})

    def ratios(ours: str, naive: str) -> dict[str, float]:
        a, b = medians[ours], medians[naive]
        out = {
            "to_first_step": a["to_first_step_s"] / b["to_first_step_s"],
            "startup_excluding_step_compute": a["startup_s"] / b["startup_s"],
        }
        if "created_to_first_step_s" in a:
            out["from_trial_created"] = a["created_to_first_step_s"] / b["created_to_first_step_s"]
        return out

    all_ratios = {"in_process": ratios("in-process/ours", "in-process/naive")}
    if ray_runs["ours"]:
        all_ratios["ray"] = ratios("ray trial/ours", "ray trial/naive")
        all_ratios["ray_reused_actor"] = ratios(
            "ray trial/ours reused actor", "ray trial/naive reused actor"
        )
    saved = (
        medians["in-process/naive"]["to_first_step_s"]
        - medians["in-process/ours"]["to_first_step_s"]
    )
    payload: dict[str, Any] = {
        "ratios": all_ratios,
        "target": {
            **common.verdict(all_ratios["in_process"]["to_first_step"], TARGET),
            "what": "ours / naive, seconds from trial start to the end of its first "
            "optimizer step, in-process medians",
        },
        "one_time": one_time,
        # Trials after which the one-time conversion + tokenization have paid for themselves.
        "break_even_trials": (one_time["materialize_s"] + one_time["tokenize_s"]) / saved,
        "medians": medians,
        "samples": {"in_process": runs, "ray": ray_runs},
    }
    return rows, payload


if __name__ == "__main__":
    main()
