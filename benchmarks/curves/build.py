"""Build a learning-curve table: every candidate trained to the full budget, every seed.

    python -m benchmarks.curves.build tweeteval_emotion          # ~1 h on 2 CPU cores
    python -m benchmarks.curves.build gsm8k_sft
    python -m benchmarks.curves.build tweeteval_emotion --gpus-per-trial 0.25 --scale 8  # GPU
    python -m benchmarks.curves.build tweeteval_emotion --quick  # 4 candidates, tiny budget
    python -m benchmarks.curves.build tweeteval_emotion --from-experiment DIR --seeds 1
        # the table from an experiment built earlier (or still running): its finished runs

The candidates run as one sweep of the project's own machinery (`launch()`): random search
whose `points_to_evaluate` are the candidates (one per seed), FIFO (no early stopping), the
test split scored at every evaluation (`train.report_test_metrics`). The table is then read
from Tune's own per-trial `result.json` rows, so it holds exactly what the trials reported.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.curves.table import TABLES, check_table
from benchmarks.curves.tasks import TASKS, Task

CURVE_SOURCES = {"step": "step", "tokens": "tokens_seen", "wall_s": "time_total_s"}


def sweep_config(task: Task, args: argparse.Namespace, storage: Path) -> dict[str, Any]:
    candidates = task.candidates()[: args.candidates]
    raw = copy.deepcopy(task.base)
    train, data = raw["train"], raw["data"]
    train["max_steps"] = round(train["max_steps"] * args.scale)
    train["eval_every_steps"] = round(train["eval_every_steps"] * args.scale)
    if data.get("max_train_examples"):
        data["max_train_examples"] = round(data["max_train_examples"] * args.scale)
    if args.quick:
        train.update({"max_steps": 4, "eval_every_steps": 2})
        data.update({"max_train_examples": 64, "max_eval_examples": 8})
    train["report_test_metrics"] = True
    points = [{**c, "train.seed": seed} for seed in task.seeds[: args.seeds] for c in candidates]
    keys = sorted({k for p in points for k in p})
    space = {k: {"type": "choice", "values": sorted({p[k] for p in points}, key=str)}
             for k in keys}
    raw.update({
        "name": f"curves-{task.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        "search_space": space,
        "search": {"algorithm": "random", "seed": 0, "points_to_evaluate": points,
                   "max_concurrent_trials": args.concurrent},
        "scheduler": {"type": "fifo"},
        "num_samples": len(points),
        "resources": {"cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial},
        "storage_path": str(storage),
        "keep_checkpoints_per_trial": 1,
        "baseline": False,
        "max_retries": 1,
    })
    return raw


def read_runs(experiment: Path, task: Task, points: list[dict[str, Any]],
              max_steps: int) -> list[dict[str, Any]]:
    """One run per finished trial folder, matched to its point by the config the trial ran.
    Trials of other points, and trials still running, are left out."""
    index = {json.dumps(p, sort_keys=True): i for i, p in enumerate(points)}
    runs = []
    for result_file in sorted(experiment.glob("*/result.json")):
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        if not rows:
            continue
        config = rows[0]["config"]
        flat = {f"{s}.{f}": v for s, fields in config.items() for f, v in fields.items()}
        i = index.get(json.dumps({k: flat[k] for k in points[0]}, sort_keys=True))
        finished = any(r.get("diverged") or r.get("infeasible") for r in rows) or any(
            r.get("step") == max_steps for r in rows)
        if i is not None and finished:
            runs.append({"point": i, "rows": rows})
    return runs


def to_curve(rows: list[dict[str, Any]], task: Task, schedule: list[int]) -> tuple[str, dict]:
    """The recorded columns at every scheduled evaluation; a run that diverged or ran out of
    memory keeps the failure value (the worst) from then on, charged its last recorded cost."""
    by_step = {int(r["step"]): r for r in rows if "step" in r and r.get("step") is not None}
    failure = next((r for r in rows if r.get("diverged") or r.get("infeasible")), None)
    status = "ok" if failure is None else ("diverged" if failure.get("diverged") else "infeasible")
    metric_names = sorted({k for r in rows for k in r
                           if k.startswith(("eval_", "test_")) or k == "train_loss"})
    curve: dict[str, list[float]] = {name: [] for name in (*CURVE_SOURCES, *metric_names)}
    last: dict[str, Any] = {"step": 0, "tokens_seen": 0, "time_total_s": 0.0}
    for step in schedule:
        row = by_step.get(step)
        if row is None and failure is None:
            raise ValueError(f"no report at step {step} and no failure recorded")
        if row is None:
            worst = -math.inf if task.mode == "max" else math.inf
            row = {**{k: math.nan for k in metric_names}, task.metric: worst,
                   task.test_metric: worst, "step": step,
                   "tokens_seen": last["tokens_seen"], "time_total_s": last["time_total_s"]}
            if task.mode == "max":  # a classifier that diverged scores 0, as the trial reports
                row[task.metric] = row[task.test_metric] = 0.0
        else:
            last = row
        for name, source in CURVE_SOURCES.items():
            curve[name].append(float(row[source]))
        for name in metric_names:
            value = row.get(name)
            curve[name].append(float(value) if value is not None else math.nan)
    curve["step"] = [int(s) for s in curve["step"]]
    return status, curve


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--candidates", type=int, default=None, help="first N candidates only")
    parser.add_argument("--seeds", type=int, default=None, help="first N training seeds only")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply steps, evaluation interval and train data (GPU: 8)")
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--gpus-per-trial", type=float, default=0.0)
    parser.add_argument("--storage", default="/tmp/curves", help="where the sweep's trials go")
    parser.add_argument("--quick", action="store_true", help="4 candidates, 4 steps (a smoke run)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--from-experiment", type=Path, default=None,
                        help="collect the table from this experiment instead of running one")
    args = parser.parse_args(argv)
    if args.quick:
        args.candidates = args.candidates or 4
        args.seeds = args.seeds or 1
    task = TASKS[args.task]
    started = time.time()
    with common.LoadSampler() as load:
        if args.from_experiment is None:
            from orchestrator import launch

            raw = sweep_config(task, args, Path(args.storage))
            experiment = Path(launch(raw, live=False).experiment_path)
        else:
            import yaml

            experiment = args.from_experiment.resolve()
            raw = yaml.safe_load((experiment / "sweep_config.yaml").read_text())
    seeds = task.seeds[: args.seeds]
    points = [p for p in raw["search"]["points_to_evaluate"] if p["train.seed"] in seeds]
    wall = time.time() - started
    if args.from_experiment is not None:  # the sweep's own span: first trial start to last end
        times = [json.loads(line) for f in experiment.glob("*/result.json")
                 for line in f.read_text().splitlines()[-1:] if line.strip()]
        starts = [t["timestamp"] - t["time_total_s"] for t in times]
        wall = max(t["timestamp"] for t in times) - min(starts)
    train = raw["train"]
    schedule = list(range(train["eval_every_steps"], train["max_steps"] + 1,
                          train["eval_every_steps"]))
    if schedule[-1] != train["max_steps"]:
        schedule.append(train["max_steps"])
    candidate_keys = [k for k in points[0] if k != "train.seed"]
    distinct: list[dict[str, Any]] = []
    for p in points:
        config = {k: p[k] for k in candidate_keys}
        if config not in distinct:
            distinct.append(config)
    runs = []
    for run in read_runs(experiment, task, points, train["max_steps"]):
        point = points[run["point"]]
        status, curve = to_curve(run["rows"], task, schedule)
        runs.append({"candidate": distinct.index({k: point[k] for k in candidate_keys}),
                     "seed": point["train.seed"], "status": status, "curve": curve})
    runs.sort(key=lambda r: (r["candidate"], r["seed"]))
    table = {
        "task": task.name, "description": task.description,
        "metric": task.metric, "test_metric": task.test_metric, "mode": task.mode,
        "dimensions": [{"key": d.key, "kind": d.kind, "low": d.low, "high": d.high,
                        "values": list(d.values)} for d in task.dimensions],
        "candidates": [{"id": i, "config": c} for i, c in enumerate(distinct)],
        "schedule": schedule,
        "runs": runs,
        "build": {
            "command": common.command_line(argv, "benchmarks.curves.build"),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "wall_s": round(wall, 1), "machine": common.machine_info(), "load": load.summary(),
            "packages": common.package_versions(), "shrunk": task.shrunk,
            "sweep": {k: raw[k] for k in ("train", "data", "lora", "resources")},
            "experiment": str(experiment), "quick": args.quick,
        },
    }
    problems = check_table(table)
    if problems:
        raise SystemExit("table incomplete: " + "; ".join(problems[:10]))
    out = args.out or (TABLES / f"{task.name}{'.quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, separators=(",", ":"), allow_nan=True) + "\n")
    print(f"wrote {out}: {len(distinct)} candidates x {len(seeds)} seeds, "
          f"{wall / 60:.1f} min")
    return out


if __name__ == "__main__":
    main()
