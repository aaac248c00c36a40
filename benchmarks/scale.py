"""Scale by simulation: the product's driver on hundreds of trivially short trials.

    python -m benchmarks.scale            # 50, 200, 500 trials; 500 random+FIFO; a profiled 200
    python -m benchmarks.scale --quick    # 20 trials, profiled, under a minute (CI)

Each sweep runs through `orchestrator.run.launch.launch()` itself (preflight, storage probes,
leakage check, the Tuner with the product's callbacks: progress view, ASHA rung state,
checkpoint janitor, TensorBoard logging, stall watchdog; `reuse_actors` on) against the 2-node
loopback cluster (`cluster.local.LocalCluster`, 1 CPU per node: 2 trials at a time). Only the
trainable is swapped, through the trainable registry, for one that sleeps: `--trial-s` seconds
in `--reports` slices, each ending in a report with a small checkpoint, like a real trial's
evaluations. Every sweep has its own driver process (`--driver`, started by this script), so
its CPU time is that sweep's alone.

Measured per sweep:
  - driver CPU seconds per trial: the driver process's user + system time (every thread, Ray's
    core worker included) during `Tuner.fit()`, divided by the trials; and its share of the
    wall time (1.0 = one core busy: Tune's control loop is one Python thread, so near 1.0 the
    driver is the bottleneck);
  - the experiment's bytes on storage: Tune's `experiment_state-*.json`, the searcher state,
    `tuner.pkl`, the product's own files, and per-trial files (results, params, TensorBoard
    events, checkpoints left by the janitor);
  - the overhead ratio of `benchmarks.orchestration_overhead` (its `breakdown`): sweep wall /
    (sum of trial function wall times / concurrency), target <= 1.10 at 500 trials (Ray's own
    release test of 10k x 1 s trials: 1.14). A trial's function time includes waiting in
    `tune.report` for the driver to take the result (Tune reports synchronously), so
    `ratio_work` is also given: wall / (sum of the trials' sleeps / concurrency).
A profiled sweep (cProfile on the driver's main thread, where Tune's loop runs) names the hot
spots. `py-spy record -o driver.svg --subprocesses -- python -m benchmarks.scale --trials 200`
shows all threads, if py-spy may attach here.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.orchestration_overhead import breakdown

NAME = "scale"
TARGET = 1.10
DRIVER_TIMEOUT_S = 3600


def make_short_trial(stamps: str, seconds: float, reports: int) -> Callable[..., None]:
    """A trainable with the product's signature that sleeps instead of training. A closure, so
    its settings travel with it to the trial processes (cloudpickle ships it by value).

    It appends one JSON line to `stamps` when it starts, after each report and when it exits:
    Tune ends the processes of the sweep's last trials without waiting for their `finally`, so
    for those the last report's line is the end (`read_stamps`)."""

    def short_trial(config: dict[str, Any], *, spec: Any, data: Any, pad_id: int) -> None:
        from ray import tune

        from trainables.config import merge_trial_config

        trial_id = tune.get_context().get_trial_id()

        def stamp(event: str, **fields: Any) -> None:
            with open(stamps, "a") as f:  # short lines: appends do not interleave
                f.write(json.dumps({"trial_id": trial_id, "event": event, "t": time.time(),
                                    **fields}) + "\n")

        stamp("enter", pid=os.getpid())
        trial = merge_trial_config(spec, config)  # what a real trial does first
        total = trial.train.max_steps or reports
        slept = in_report = 0.0
        try:
            for index in range(1, reports + 1):
                time.sleep(seconds / reports)
                slept += seconds / reports
                step = total * index // reports
                loss = 1.0 + (math.log10(trial.train.learning_rate) + 2.5) ** 2 + 1.0 / step
                with tempfile.TemporaryDirectory(prefix="ckpt-") as folder:
                    Path(folder, "state.json").write_text(json.dumps({"step": step}))
                    started = time.perf_counter()
                    tune.report(
                        {"eval_loss": loss, "train_loss": loss, "step": step,
                         "total_steps": total, "tokens_seen": step * 512},
                        checkpoint=tune.Checkpoint.from_directory(folder),
                    )
                    in_report += time.perf_counter() - started
                stamp("report", report_s=in_report, work_s=slept)
        finally:  # also when the scheduler stops the trial (SystemExit inside tune.report)
            stamp("exit", report_s=in_report, work_s=slept)

    return short_trial


def read_stamps(path: Path) -> dict[str, dict[str, Any]]:
    """Per trial: `entered`, `exited` (its exit, else its last report), `report_s`, `work_s`,
    `pid`, and whether it was seen exiting, in `orchestration_overhead.breakdown`'s terms (no
    imports to wait for: `ready` is `entered`)."""
    trials: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        trial = trials.setdefault(record["trial_id"], {"trial_id": record["trial_id"],
                                                       "report_s": 0.0, "work_s": 0.0,
                                                       "seen_exiting": False})
        if record["event"] == "enter":
            trial.update(entered=record["t"], ready=record["t"], pid=record["pid"])
        else:
            trial.update(exited=record["t"], report_s=record["report_s"],
                         work_s=record["work_s"])
            trial["seen_exiting"] |= record["event"] == "exit"
    return trials


def sweep_config(model_dir: Path, storage: Path, trials: int, method: str,
                 concurrency: int) -> dict[str, Any]:
    algorithm, scheduler = method.split("+")
    return {
        "task": "causal_lm",
        "model": {"path": str(model_dir)},
        "data": common.dates_data(max_train_examples=64, max_eval_examples=16),
        "train": {"max_steps": 40, "eval_every_steps": 10, "seed": 0},
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "search_space": {
            "train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-1},
            "lora.r": {"type": "choice", "values": [4, 8, 16]},
        },
        "search": {"algorithm": algorithm, "seed": 0, "max_concurrent_trials": concurrency},
        "scheduler": {"type": scheduler, "reduction_factor": 2} if scheduler == "asha"
        else {"type": scheduler},
        "num_samples": trials,
        "baseline": False,
        "resources": {"cpus_per_trial": 1},
        "storage_path": str(storage),
    }


# --- one sweep, in its own driver process -------------------------------------------------------


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _where(function: tuple[str, int, str]) -> str:
    file, line, name = function
    return f"{Path(file).name}:{line}({name})"


def _hot_spots(profile: cProfile.Profile, key: str, limit: int = 25) -> list[dict[str, Any]]:
    """The profile's top functions by `key`, each with its three biggest callers and the chain
    of biggest callers above it (which code of Tune's or ours the time is spent for)."""
    stats: dict[Any, Any] = pstats.Stats(profile, stream=io.StringIO()).stats  # type: ignore[attr-defined]

    def biggest_callers(function: Any) -> list[Any]:
        callers = stats[function][4] if function in stats else {}
        return [c for c, _ in sorted(callers.items(), key=lambda kv: kv[1][3], reverse=True)]

    rows = []
    for function, (_, calls, tottime, cumtime, _) in stats.items():
        chain, current = [], function
        for _ in range(6):
            above = biggest_callers(current)
            if not above or above[0] in chain:
                break
            current = above[0]
            chain.append(current)
        rows.append({"function": _where(function), "calls": calls,
                     "tottime_s": round(tottime, 3), "cumtime_s": round(cumtime, 3),
                     "called_from": [_where(c) for c in biggest_callers(function)[:3]],
                     "chain": [_where(c) for c in chain]})
    return sorted(rows, key=lambda r: r[key], reverse=True)[:limit]


def storage_bytes(experiment: Path) -> dict[str, Any]:
    """The experiment folder's bytes by kind of file."""
    kinds = {"experiment_state": 0, "searcher_state": 0, "tuner_pkl": 0, "product_files": 0,
             "trial_files": 0, "checkpoints": 0}
    trials = {p.name for p in experiment.iterdir() if (p / "params.json").exists()}
    for path in experiment.rglob("*"):
        if not path.is_file():
            continue
        size = path.stat().st_size
        top, *inner = path.relative_to(experiment).parts
        if top in trials:
            kind = "checkpoints" if inner[0].startswith("checkpoint_") else "trial_files"
        elif not inner:
            kind = ("experiment_state" if top.startswith("experiment_state") else
                    "searcher_state" if top.startswith(("searcher-state", "basic-variant"))
                    else "tuner_pkl" if top == "tuner.pkl" else "product_files")
        else:  # e.g. the experiment's logs folder
            kind = "product_files"
        kinds[kind] += size
    return {**kinds, "total": sum(kinds.values()), "trial_folders": len(trials)}


def drive(spec_path: Path) -> None:
    """`--driver SPEC`: run one sweep through `launch()` and write what it measured."""
    spec = json.loads(spec_path.read_text())
    from benchmarks.timeline import Timeline
    from orchestrator.run import launch as launch_module
    from trainables import registry

    registry.TRAINABLES["causal_lm"] = make_short_trial(
        spec["stamps"], spec["trial_s"], spec["reports"])
    timeline = Timeline()
    marks: dict[str, float] = {}
    profile = cProfile.Profile() if spec["profile"] else None
    real_build_callbacks, real_build_tuner = (launch_module.build_callbacks,
                                              launch_module.build_tuner)

    def build_callbacks(*args: Any, **kwargs: Any) -> list[Any]:
        return [*real_build_callbacks(*args, **kwargs), timeline]

    def build_tuner(*args: Any, **kwargs: Any) -> Any:
        tuner = real_build_tuner(*args, **kwargs)
        real_fit = tuner.fit

        def fit() -> Any:
            marks.update(fit_started=time.time(), fit_cpu_started=_cpu_s())
            if profile is not None:
                profile.enable()
            try:
                return real_fit()
            finally:
                if profile is not None:
                    profile.disable()
                marks.update(fit_ended=time.time(), fit_cpu_ended=_cpu_s())

        tuner.fit = fit
        return tuner

    launch_started, launch_cpu_started = time.time(), _cpu_s()
    with common.patched(launch_module, "build_callbacks", build_callbacks), \
            common.patched(launch_module, "build_tuner", build_tuner):
        result = launch_module.launch(spec["config"], address=spec["address"], live=False)
    launch_ended, launch_cpu_ended = time.time(), _cpu_s()
    stamps = read_stamps(Path(spec["stamps"]))
    for trial_id, driver in timeline.trials.items():
        if trial_id in stamps:
            stamps[trial_id].update(driver)
    trials = [t for t in stamps.values()
              if {"created", "started", "completed", "entered", "exited"} <= t.keys()]
    parts = breakdown(marks["fit_started"], marks["fit_ended"], trials, spec["concurrency"])
    parts.pop("trial_stamps")
    work_s = sum(t["work_s"] for t in trials)
    fit_wall = marks["fit_ended"] - marks["fit_started"]
    fit_cpu = marks["fit_cpu_ended"] - marks["fit_cpu_started"]
    out = {
        **parts,
        "trials": spec["config"]["num_samples"],
        "method": spec["method"],
        "stamped_trials": len(trials),
        "unstamped": sorted(set(result.trials["trial_id"]) - {t["trial_id"] for t in trials}),
        # ended by Tune before their `finally` ran: their last report stands for their exit
        "ended_without_exit_stamp": sum(not t["seen_exiting"] for t in trials),
        "status_counts": result.trials["status"].value_counts().to_dict(),
        "stopped_early": int(result.trials["stopped_early"].sum()),
        "trial_failures": sum(timeline.failures.values()),
        "fit_wall_s": fit_wall,
        "driver_cpu_s": fit_cpu,
        "driver_cpu_s_per_trial": fit_cpu / len(trials),
        "driver_cpu_share_of_wall": fit_cpu / fit_wall,
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "launch_wall_s": launch_ended - launch_started,
        "launch_cpu_s": launch_cpu_ended - launch_cpu_started,
        "after_fit_s": launch_ended - marks["fit_ended"],  # reading the results back
        "ratio_work": fit_wall / (work_s / spec["concurrency"]),
        "storage_bytes": storage_bytes(Path(result.experiment_path)),
    }
    if profile is not None:
        out["hot_spots_tottime"] = _hot_spots(profile, "tottime_s")
        out["hot_spots_cumtime"] = _hot_spots(profile, "cumtime_s")
    Path(spec["out"]).write_text(json.dumps(out, indent=2, default=str))


# --- the benchmark: a cluster, one driver per sweep ---------------------------------------------


def run_driver(spec: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, Any]:
    tag = f"{spec['method'].replace('+', '-')}-{spec['config']['num_samples']}" + (
        "-profiled" if spec["profile"] else "")
    spec = {**spec, "stamps": str(work / f"stamps-{tag}.jsonl"), "out": str(work / f"{tag}.json")}
    spec["config"] = {**spec["config"], "name": f"scale-{tag}"}
    spec_path = work / f"spec-{tag}.json"
    spec_path.write_text(json.dumps(spec))
    log = work / f"driver-{tag}.log"
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--driver",
                               str(spec_path)], cwd=common.ROOT, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=DRIVER_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"driver for {tag} failed ({done.returncode}); its log ends:\n"
                           + log.read_text()[-4000:])
    return json.loads(Path(spec["out"]).read_text())  # type: ignore[no-any-return]


def planned_runs(args: argparse.Namespace) -> list[tuple[int, str, bool]]:
    """(trials, method, profiled) for each sweep."""
    if args.quick:
        return [(20, args.method, True)]
    runs = [(n, args.method, False) for n in args.trials]
    if args.compare_method:
        runs.append((max(args.trials), args.compare_method, False))
    if args.profile_trials:
        runs.append((args.profile_trials, args.method, True))
    return runs


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one profiled 20-trial sweep (CI)")
    parser.add_argument("--trials", type=int, nargs="+", default=[50, 200, 500],
                        help="trial counts, one sweep each (default 50 200 500)")
    parser.add_argument("--method", default="hyperopt+asha",
                        help="SEARCH+SCHEDULER of the sweeps (default: the product's default)")
    parser.add_argument("--compare-method", default="random+fifo",
                        help="also run the largest count with this (empty: skip)")
    parser.add_argument("--profile-trials", type=int, default=200,
                        help="one more sweep of this many trials under cProfile (0: skip)")
    parser.add_argument("--trial-s", type=float, default=None,
                        help="seconds each trial sleeps (default 1.0; quick 0.5)")
    parser.add_argument("--reports", type=int, default=4, help="reports per trial")
    parser.add_argument("--cpus-per-node", type=int, default=1,
                        help="CPUs of each of the 2 nodes = trials at a time per node")
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")
    parser.add_argument("--driver", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver is not None:
        drive(args.driver)
        return {}
    trial_s = args.trial_s or (0.5 if args.quick else 1.0)
    concurrency = 2 * args.cpus_per_node
    command = common.command_line(argv, "benchmarks.scale")

    from cluster.local import LocalCluster

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, common.LoadSampler() as load:
        work = Path(tmp)
        model_dir = common.tiny_models().make_tiny_causal_lm(work / "tiny-lm")
        started = time.time()
        with LocalCluster(workers=1, cpus_per_node=args.cpus_per_node) as cluster:
            cluster_start_s = time.time() - started
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
                   **cluster.env, "PYTHONPATH": str(common.ROOT)}
            for trials, method, profiled in planned_runs(args):
                spec = {"address": cluster.address, "method": method, "profile": profiled,
                        "trial_s": trial_s, "reports": args.reports, "concurrency": concurrency,
                        "config": sweep_config(model_dir, work / "results", trials, method,
                                               concurrency)}
                result = run_driver(spec, work, env)
                results.append({**result, "profiled": profiled})
                print(f"{method} x {trials}{' (profiled)' if profiled else ''}: ratio "
                      f"{result['ratio']:.3f}, driver {result['driver_cpu_s_per_trial']:.3f} "
                      f"CPU s/trial ({result['driver_cpu_share_of_wall']:.0%} of a core), "
                      f"state {result['storage_bytes']['total'] / 1e6:.1f} MB", flush=True)

    rows = [{
        "method": r["method"], "trials": r["trials"], "profiled": r["profiled"],
        "ratio": r["ratio"], "ratio_work": r["ratio_work"], "wall_s": r["fit_wall_s"],
        "driver_cpu_s_per_trial": r["driver_cpu_s_per_trial"],
        "driver_busy": r["driver_cpu_share_of_wall"],
        "overhead_per_trial_s": r["overhead_per_trial_s"],
        "report_share": r["in_trial_report_share"],
        "state_json_kb": r["storage_bytes"]["experiment_state"] / 1024,
        "storage_mb": r["storage_bytes"]["total"] / 2**20,
        "driver_rss_mb": r["driver_peak_rss_mb"],
        "failures": r["trial_failures"],
    } for r in results]
    print(f"\n2-node loopback cluster ({args.cpus_per_node} CPU each, {concurrency} trials at a "
          f"time, started in {cluster_start_s:.0f}s); trials sleep {trial_s}s in "
          f"{args.reports} reports")
    print(common.table(rows))
    unprofiled = [r for r in results if not r["profiled"] and r["method"] == args.method]
    judged = max(unprofiled or results, key=lambda r: r["trials"])
    profiled_run = next((r for r in results if r["profiled"]), None)
    if profiled_run is not None:
        print(f"\ndriver hot spots, {profiled_run['trials']} trials (cProfile, main thread, "
              "by own time):")
        print(common.table(profiled_run["hot_spots_tottime"][:12],
                           ["function", "calls", "tottime_s", "cumtime_s"]))
    print(f"\nratio at {judged['trials']} trials: {judged['ratio']:.3f} (target <= {TARGET}: "
          f"{'met' if judged['ratio'] <= TARGET else 'MISSED'})")
    payload = {
        "target": common.verdict(judged["ratio"], TARGET),
        "judged_at_trials": judged["trials"],
        "rows": rows,
        "runs": results,
        "trial_s": trial_s,
        "reports_per_trial": args.reports,
        "concurrency": concurrency,
        "cluster": {"nodes": 2, "cpus_per_node": args.cpus_per_node,
                    "start_s": cluster_start_s},
    }
    out = args.out or common.default_out(NAME, args.quick)
    common.write_result(out, name=NAME, command=command, quick=args.quick, load=load,
                        payload=payload)
    return payload


if __name__ == "__main__":
    main()
