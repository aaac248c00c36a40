"""Compare search methods on learning-curve tables: every method, same budget, many seeds.

    python -m benchmarks.curves.compare                       # every table, 30 seeds, all methods
    python -m benchmarks.curves.compare --tables benchmarks/tables/tweeteval_emotion.json
    python -m benchmarks.curves.compare --seeds 5 --methods hyperopt_asha random_fifo
    python -m benchmarks.curves.compare --quick               # synthetic table, seconds (CI)

One local Ray (`address="local"`, no dashboard, 4 logical CPUs: 4 trials at a time) runs every
sweep: a `tune.Tuner(...).fit()` of the replay trainable (`replay.py`) with the method's
searcher and scheduler (`methods.py`), stopped by the step budget. A Tune callback records each
report in arrival order: cumulative steps and charged wall seconds across the sweep's trials,
the validation metric and the test metric of that row. Seeds are the outer loop and the method
order rotates with the seed, so a load that drifts during the run touches every method alike.

Output: `benchmarks/results/search_table.json` (`--quick`: `search_table.quick.json`) with,
per method and table, the anytime regret (median, p10, p90 over seeds, at 25/50/100% of the
budget and as curves against steps and against wall seconds), the steps to reach random-4x's
final best (median over seeds of random + FIFO at 4x the budget) as a ratio of random-4x's
steps, the reach rate, the steps to within 0.5 points of the table's best, the selected
configuration's test metric; plus the targets for the default, and `search_regret_<task>.png`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.curves import methods as M
from benchmarks.curves import stats
from benchmarks.curves.replay import replay
from benchmarks.curves.synthetic import write_synthetic
from benchmarks.curves.table import TABLES, Table, load_table

NAME = "search_table"
MODULE = "benchmarks.curves.compare"
QUICK_SEEDS = 3
TIME_SCALE = 0.002  # seconds slept per recorded wall second


def default_tables() -> list[Path]:
    return sorted(p for p in TABLES.glob("*.json") if not p.name.endswith(".quick.json"))


def start_ray(num_cpus: int) -> bool:
    """A new local Ray for this run (never joins another); False when already connected."""
    import ray

    if ray.is_initialized():
        return False
    root = str(common.ROOT)
    env = {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", ""))
                                         if p),
           "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
           "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 1024 ** 2, runtime_env={"env_vars": env})
    return True


def trace_callback(table: Table, keep_rows: bool) -> Any:
    from ray.tune import Callback

    class TraceCallback(Callback):
        """Every report in arrival order, with the sweep's cumulative cost at that point."""

        def __init__(self) -> None:
            self.events: list[stats.Event] = []
            self.steps = 0.0
            self.wall = 0.0
            self._last: dict[str, int] = {}

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                            **info: Any) -> None:
            if M.is_repeat(self._last, trial.trial_id, result):
                return
            self.steps += float(result.get("delta_steps", 0))
            self.wall += float(result.get("delta_wall_s", 0.0))
            row = ({k: result[k] for k in table.runs[0].curve if k in result}
                   if keep_rows else {})
            self.events.append(stats.Event(
                trial=trial.trial_id, cum_steps=self.steps, cum_wall=self.wall,
                value=float(result[table.metric]), test=float(result[table.test_metric]),
                candidate=int(result.get("candidate", -1)), seed=int(result.get("table_seed", -1)),
                report_index=int(result.get("report_index", -1)), row=row))

    return TraceCallback()


def quiet_tune() -> None:
    """Tune warns that it cannot read result files the sweep was told not to write."""
    import logging

    for name in ("ray.tune.analysis.experiment_analysis", "ray.tune.result_grid",
                 "ray.tune.tune", "ray.tune.tuner"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_sweep(table: Table, method: str, seed: int, *, budget_steps: int, time_scale: float,
              workdir: Path, keep_rows: bool = False,
              concurrency: int = M.CONCURRENCY) -> dict[str, Any]:
    """One method's sweep with one search seed; its trace and what it cost.

    `concurrency` 1 runs one trial at a time: the searcher's and the scheduler's decisions then
    do not depend on which of several concurrent trials reports first, so a seed's sweep is
    the same on every run (the tests use it)."""
    from ray import tune

    quiet_tune()
    folder = Path(tempfile.mkdtemp(prefix=f"{method}-{seed}-", dir=workdir))
    setting = M.Setting(table=table, seed=seed, budget_steps=budget_steps, workdir=folder,
                        concurrency=concurrency)
    sweep = M.METHODS[method](setting)
    trainable = tune.with_resources(
        tune.with_parameters(replay, table=table, search_seed=seed, time_scale=time_scale,
                             checkpoints=sweep.checkpoints, transform=sweep.transform,
                             barrier=str(folder / "started"), peers=setting.concurrency),
        {"cpu": 1})
    callback = trace_callback(table, keep_rows)
    tuner = tune.Tuner(
        trainable, param_space=sweep.param_space,
        tune_config=tune.TuneConfig(search_alg=sweep.search_alg, scheduler=sweep.scheduler,
                                    num_samples=sweep.num_samples, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{method}-{seed}", storage_path=str(folder / "storage"), verbose=0,
            stop=M.make_stopper(sweep.budget_steps), callbacks=[callback],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - started
    errors = sum(r.error is not None for r in grid)
    shutil.rmtree(folder, ignore_errors=True)
    return {"method": method, "seed": seed, "events": callback.events, "wall_s": wall,
            "trials": len(grid), "errors": errors, "budget_steps": sweep.budget_steps,
            "num_samples": sweep.num_samples,
            "charged_steps": callback.steps, "notes": sweep.notes}


def ended_short(result: dict[str, Any]) -> bool:
    """A sweep that stopped before spending its budget while its searcher could still have
    sampled: nothing in the method ends a sweep there, so it is the harness's failure (seen
    once in ~600 sweeps, with two comparisons sharing 2 cores), not the method's result."""
    return (result["charged_steps"] < result["budget_steps"]
            and result["trials"] < result["num_samples"] and not result["errors"])


def run_sweep_whole(table: Table, method: str, seed: int, *, attempts: int = 3,
                    **kwargs: Any) -> dict[str, Any]:
    """`run_sweep`, run again (same seed) while it ends short; the count is in `reruns`."""
    for attempt in range(attempts):
        result = run_sweep(table, method, seed, **kwargs)
        result["reruns"] = attempt
        result["ended_short"] = ended_short(result)
        if not result["ended_short"]:
            break
        print(f"{table.task} seed {seed} {method}: ended at {result['charged_steps']:.0f} of "
              f"{result['budget_steps']} steps with {result['trials']} trials; run again",
              flush=True)
    return result


def best_candidates(table: Table, tolerance: float = 0.0) -> set[int]:
    """The candidates whose run reached the table's best value (any seed, any evaluation)."""
    best = table.best_value()
    return {r.candidate for r in table.runs
            if any(math.isfinite(v) and abs(v - best) <= tolerance for v in r.curve[table.metric])}


def summarize(table: Table, sweeps: list[dict[str, Any]], budget_steps: int,
              names: Sequence[str] = ()) -> dict[str, Any]:
    """Per method: the figures of `stats.summarize_method`, targets relative to random-4x.
    A method of `names` that is another on this table (`methods.same_as`) gets its figures."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for s in sweeps:
        by_method.setdefault(s["method"], []).append(s)
    for name in names:
        other = M.same_as(name, table)
        if other and name not in by_method and other in by_method:
            by_method[name] = [{**s, "notes": {**s["notes"], "same_as": other}}
                               for s in by_method[other]]
    table_best = table.best_value()
    mode = table.mode
    ref = by_method.get("random_fifo_4x")
    if ref:
        target = stats.median([stats.final_best(s["events"], mode) for s in ref])
        random4x_steps = float(ref[0]["budget_steps"])
    else:  # no random-4x run: the target is undefined, the ratios are against 4x the budget
        target, random4x_steps = math.nan, 4.0 * budget_steps
    ref1 = by_method.get("random_fifo") or next(iter(by_method.values()))
    wall_budget = stats.median([s["events"][-1].cum_wall if s["events"] else 0.0 for s in ref1])
    out: dict[str, Any] = {
        "table_best": table_best, "target_random4x_best": target,
        "target_near_best": stats.near_best_target(table_best, mode),
        "budget_steps": budget_steps, "random4x_steps": random4x_steps,
        "wall_budget_s": wall_budget, "best_candidates": sorted(best_candidates(table)),
        "methods": {},
    }
    for name, runs in by_method.items():
        figures = stats.summarize_method(
            [r["events"] for r in runs], mode=mode, table_best=table_best, budget=budget_steps,
            target_random4x=target, random4x_steps=random4x_steps, wall_budget=wall_budget,
            best_candidates=best_candidates(table), own_budget=float(runs[0]["budget_steps"]))
        figures["sweep_wall_s"] = stats.band([r["wall_s"] for r in runs])
        figures["trials_per_sweep"] = stats.band([float(r["trials"]) for r in runs])
        figures["errors"] = sum(r["errors"] for r in runs)
        figures["notes"] = runs[0]["notes"]
        out["methods"][name] = figures
    return out


def targets(task_summary: dict[str, Any], default: str) -> dict[str, Any]:
    """The default's targets on one table: steps ratio <= 1/4, reach rate >= 0.9, lowest
    median regret at 25/50/100% of the budget among the methods with that budget."""
    figures = task_summary["methods"].get(default)
    if figures is None:
        return {"default_missing": default}
    ratio = figures["median_steps_ratio_to_random4x"]
    out: dict[str, Any] = {
        "steps_ratio": common.verdict(ratio, 0.25),
        "reach_rate": common.verdict(figures["reach_rate"], 0.9, lower_is_better=False),
        "lowest_median_regret": {},
    }
    for f in stats.FRACTIONS:
        mine = figures["median_regret"][f]
        others = {n: m["median_regret"][f] for n, m in task_summary["methods"].items()
                  if n != default}
        best_other = min(others.items(), key=lambda kv: kv[1], default=(None, math.inf))
        out["lowest_median_regret"][f] = {
            "value": mine, "best_other": best_other[0], "best_other_value": best_other[1],
            "met": bool(mine <= best_other[1]),
        }
    out["met"] = bool(out["steps_ratio"]["met"] and out["reach_rate"]["met"]
                      and all(v["met"] for v in out["lowest_median_regret"].values()))
    return out


def seed_regrets(table: Table, sweeps: list[dict[str, Any]], budget_steps: int,
                 names: Sequence[str]) -> dict[str, dict[int, list[float]]]:
    """Per method and search seed: the regret at 25%, 50% and 100% of the budget (a method
    that is another on this table, `methods.same_as`, has the other's)."""
    out: dict[str, dict[int, list[float]]] = {}
    best = table.best_value()
    for s in sweeps:
        out.setdefault(s["method"], {})[s["seed"]] = [
            stats.regret(stats.best_so_far(s["events"], float(f) * budget_steps, table.mode),
                         best, table.mode) for f in stats.FRACTIONS]
    for name in names:
        other = M.same_as(name, table)
        if other and name not in out and other in out:
            out[name] = out[other]
    return out


def paired_vs(default: Mapping[Any, list[float]], other: Mapping[Any, list[float]]
              ) -> dict[str, float]:
    """Seed by seed (a key: a seed, or a (task, seed) pair), whether `other`'s regret summed
    over the three budget points is lower than `default`'s (a win), higher (a loss) or the same
    (a tie): one paired observation per seed, since a seed's three points come from one trace.
    `p`: the two-sided sign test of wins against losses (scipy.stats.binomtest)."""
    from scipy.stats import binomtest

    wins = losses = ties = 0
    for seed in sorted(set(default) & set(other)):
        diff = sum(other[seed]) - sum(default[seed])
        wins += diff < 0
        losses += diff > 0
        ties += diff == 0
    p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
    return {"wins": wins, "losses": losses, "ties": ties, "p": float(p)}


def ranking(summaries: dict[str, dict[str, Any]],
            regrets: dict[str, dict[str, dict[int, list[float]]]] | None = None,
            default: str = M.DEFAULT) -> list[dict[str, Any]]:
    """Every method at the base budget that runs on every task, ranked by its median regret at
    25%, 50% and 100% of the budget on each task (rank 1 = lowest; ties share the mean rank);
    a method's score is the mean of its ranks over the tasks and the three budget points.
    Sorted best first. With `regrets` (`seed_regrets` per task), each row also has its paired
    comparison with `default` over every task, seed and budget point (`paired_vs`)."""
    tasks = list(summaries)
    names = [n for n in summaries[tasks[0]]["methods"]
             if n != "random_fifo_4x" and all(n in summaries[t]["methods"] for t in tasks)]
    ranks: dict[str, list[float]] = {n: [] for n in names}
    for task in tasks:
        for f in stats.FRACTIONS:
            values = {n: summaries[task]["methods"][n]["median_regret"][f] for n in names}
            for n in names:
                below = sum(v < values[n] for v in values.values())
                equal = sum(v == values[n] for v in values.values())
                ranks[n].append(below + (equal + 1) / 2)
    rows = []
    for n, r in ranks.items():
        row: dict[str, Any] = {
            "method": n, "mean_rank": sum(r) / len(r), "ranks": r,
            "product": n in M.PRODUCT_SETTINGS,
            "reach_rate": {t: summaries[t]["methods"][n]["reach_rate"] for t in tasks}}
        if regrets is not None:
            # One paired observation per (task, seed), every task's in one sign test.
            def by_task_seed(method: str) -> dict[tuple[str, int], list[float]]:
                return {(t, seed): values for t in tasks
                        for seed, values in (regrets[t].get(method) or {}).items()}

            row["vs_default"] = paired_vs(by_task_seed(default), by_task_seed(n))
        rows.append(row)
    return sorted(rows, key=lambda row: (row["mean_rank"], row["method"]))


def choose_default(rows: list[dict[str, Any]], default: str = M.DEFAULT,
                   alpha: float = 0.05) -> str:
    """The decision rule: among the product methods other than `default`, those that beat it
    seed by seed (more wins than losses, sign test) at family-wise level `alpha` (Holm's
    step-down over all of them); of those, the one with the best mean rank, if that is
    strictly better than the default's. Otherwise the default stays."""
    ranks = {r["method"]: r["mean_rank"] for r in rows}
    tested = sorted((r for r in rows if r["product"] and r["method"] != default
                     and r.get("vs_default")), key=lambda r: r["vs_default"]["p"])
    better: set[str] = set()
    for i, row in enumerate(tested):
        if row["vs_default"]["p"] > alpha / (len(tested) - i):
            break  # Holm: this and every larger p stay unrejected
        if row["vs_default"]["wins"] > row["vs_default"]["losses"]:
            better.add(row["method"])
    winners = [r for r in rows if r["method"] in better
               and r["mean_rank"] < ranks.get(default, float("inf"))]
    return str(min(winners, key=lambda r: r["mean_rank"])["method"]) if winners else default


def plot(task: str, task_summary: dict[str, Any], path: Path, default: str) -> Path:
    """Median regret with its p10-p90 band per method, against the steps charged (left) and
    the wall seconds charged (right), both over all of a sweep's trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    budget = task_summary["budget_steps"]
    cmap = plt.get_cmap("tab20")
    quarters: list[float] = []
    for i, (name, fig_m) in enumerate(sorted(task_summary["methods"].items())):
        color = cmap(i % 20)
        style = "--" if name.startswith("hyperopt_asha_") else "-"
        width = 2.8 if name == default else 1.3
        label = name + (" (default)" if name == default else "")
        for ax, key, limit in ((axes[0], "curve_steps", budget),
                               (axes[1], "curve_wall", task_summary["wall_budget_s"])):
            curve = fig_m[key]
            pts = [(x, m, lo, hi) for x, m, lo, hi in zip(
                curve["x"], curve["median"], curve["p10"], curve["p90"], strict=True)
                if x <= limit * 1.0001 and math.isfinite(m)]
            if not pts:
                continue
            xs, med, lo, hi = zip(*pts, strict=True)
            hi = [h if math.isfinite(h) else max(med) for h in hi]
            ax.plot(xs, med, color=color, lw=width, ls=style, label=label)
            ax.fill_between(xs, lo, hi, color=color, alpha=0.06)
        quarter = fig_m["median_regret"].get("0.25")
        if quarter is not None and math.isfinite(quarter):
            quarters.append(quarter)
    # the y range shows where the methods separate: up to most methods' regret at 25%
    top = sorted(quarters)[int(0.75 * (len(quarters) - 1))] if quarters else 0.1
    ref = task_summary["methods"].get("random_fifo_4x")
    final = ref and ref["median_regret"].get(f"{ref['budget_steps'] / budget:g}")
    for ax in axes:
        if final is not None and math.isfinite(final):
            ax.axhline(final, color="k", ls=":", lw=1, label="random-4x final (median)")
        ax.set_ylim(0, (top or 0.1) * 1.3)
        ax.set_ylabel("regret: table best - best validation metric so far")
    axes[0].set_xlabel(f"optimizer steps charged, all trials (the budget: {budget} steps)")
    axes[1].set_xlabel("wall seconds charged, all trials (to random + FIFO's median total)")
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{task}: median regret over search seeds, p10-p90 band")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_summary(task: str, task_summary: dict[str, Any]) -> None:
    rows = []
    for name, m in task_summary["methods"].items():
        rows.append({
            "method": name, "seeds": m["seeds"],
            "steps/r4x": m["median_steps_ratio_to_random4x"], "reach": m["reach_rate"],
            "reach~best": m["reach_rate_near_best"],
            "regret@.25": m["median_regret"]["0.25"], "regret@.5": m["median_regret"]["0.5"],
            "regret@1": m["median_regret"]["1.0"],
            "test(sel)": m["selected_test"]["median"], "sweep_s": m["sweep_wall_s"]["median"],
        })
    print(f"\n{task}: table best {task_summary['table_best']:.4f}, random-4x target "
          f"{task_summary['target_random4x_best']:.4f}, budget {task_summary['budget_steps']} "
          "steps")
    print(common.table(rows))


def run_all(loaded: list[Table], names: list[str], seeds: int, args: argparse.Namespace,
            time_scale: float, workdir: Path, sweeps: dict[str, list[dict[str, Any]]]) -> None:
    done: set[tuple[str, str, int]] = set()
    if args.skip_done and args.traces and args.traces.exists():
        done = {(r["task"], r["method"], r["seed"]) for r in read_traces(args.traces)}
    own_ray = start_ray(args.num_cpus)
    try:
        for table in loaded:
            budget = args.budget_trials * table.max_steps
            for seed in range(args.seed_start, seeds):
                for name in order_for(seed, names):
                    if (table.task, name, seed) in done or M.same_as(name, table):
                        continue
                    result = run_sweep_whole(table, name, seed, budget_steps=budget,
                                             time_scale=time_scale, workdir=workdir,
                                             keep_rows=args.keep_rows)
                    result.update(task=table.task, loadavg_1m=os.getloadavg()[0],
                                  command=common.command_line(args.argv, MODULE))
                    sweeps[table.task].append(result)
                    if args.traces:
                        append_trace(args.traces, result)
                    print(f"{table.task} seed {seed:2d} {name:26s} {result['wall_s']:6.1f} s "
                          f"{result['trials']:3d} trials {result['charged_steps']:6.0f} steps",
                          flush=True)
    finally:
        if own_ray:
            import ray

            ray.shutdown()


def append_trace(path: Path, result: dict[str, Any]) -> None:
    record = {**result, "events": [e.__dict__ for e in result["events"]]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def read_traces(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            record["events"] = [stats.Event(**e) for e in record["events"]]
            out.append(record)
    return out


def order_for(seed: int, names: Sequence[str]) -> list[str]:
    """The method order of one seed: rotated by the seed, reversed on odd seeds."""
    names = list(names)
    k = seed % len(names)
    rotated = names[k:] + names[:k]
    return rotated if seed % 2 == 0 else list(reversed(rotated))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="*", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=None, help="search seeds (default 30)")
    parser.add_argument("--seed-start", type=int, default=0,
                        help="run seeds seed-start .. seeds-1 only (split a run over processes,"
                             " then --from-traces)")
    parser.add_argument("--methods", nargs="*", default=None, choices=sorted(M.METHODS))
    parser.add_argument("--budget-trials", type=int, default=M.BASE_TRIALS,
                        help="the step budget, in full-length trials")
    parser.add_argument("--time-scale", type=float, default=None,
                        help=f"seconds slept per recorded wall second (default {TIME_SCALE})")
    parser.add_argument("--num-cpus", type=int, default=M.CONCURRENCY)
    parser.add_argument("--quick", action="store_true", help="synthetic table, 3 seeds (CI)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plots", type=Path, default=None, help="folder for the PNGs")
    parser.add_argument("--keep-rows", action="store_true",
                        help="keep every reported row in the output (tests)")
    parser.add_argument("--traces", type=Path, default=None,
                        help="append each sweep's trace to this JSON-lines file as it ends")
    parser.add_argument("--from-traces", nargs="*", type=Path, default=None,
                        help="summarize these trace files (of --traces) instead of running")
    parser.add_argument("--skip-done", action="store_true",
                        help="skip the sweeps already in the --traces file (resume a run)")
    args = parser.parse_args(argv)
    args.argv = argv
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    workdir = Path(tempfile.mkdtemp(prefix="curves-compare-"))
    if args.quick:
        tables = args.tables or [write_synthetic(workdir / "synthetic.json")]
        seeds = args.seeds or QUICK_SEEDS
        names = args.methods or [n for n in M.QUICK_METHODS if M.available(n)]
        time_scale = 0.0005 if args.time_scale is None else args.time_scale
    else:
        tables = args.tables if args.tables is not None else default_tables()
        seeds = args.seeds or 30
        names = args.methods or list(M.METHODS)
        time_scale = TIME_SCALE if args.time_scale is None else args.time_scale
    missing = [n for n in names if not M.available(n)]
    if missing:
        raise SystemExit(f"methods {missing} need {[M.NEEDS[n] for n in missing]} installed")
    if not tables:
        raise SystemExit(f"no table in {TABLES} (build one: python -m benchmarks.curves.build)")
    out = args.out or common.default_out(NAME, args.quick)
    plots = args.plots or out.parent
    loaded = [load_table(p) for p in tables]
    sweeps: dict[str, list[dict[str, Any]]] = {t.task: [] for t in loaded}
    started = time.time()
    with common.LoadSampler() as load:
        if args.from_traces:
            latest: dict[tuple[str, str, int], dict[str, Any]] = {}
            for path in args.from_traces:  # a (task, method, seed) twice: the later counts
                for result in read_traces(path):
                    if result["task"] in sweeps and result["method"] in names \
                            and result["seed"] < seeds:
                        latest[result["task"], result["method"], result["seed"]] = result
            for result in latest.values():
                sweeps[result["task"]].append(result)
        else:
            run_all(loaded, names, seeds, args, time_scale, workdir, sweeps)
    wall = time.time() - started
    if args.from_traces:
        present = {s["method"] for v in sweeps.values() for s in v}
        names = [n for n in names if n in present
                 or any(M.same_as(n, t) in present for t in loaded)]
        wall = sum(s["wall_s"] for v in sweeps.values() for s in v)
    summaries = {t.task: summarize(t, sweeps[t.task], args.budget_trials * t.max_steps, names)
                 for t in loaded}
    payload: dict[str, Any] = {
        "tasks": [t.task for t in loaded],
        "default": M.DEFAULT,
        "tables": {t.task: str(p) for t, p in zip(loaded, tables, strict=True)},
        "budget_trials": args.budget_trials,
        "concurrency": args.num_cpus,
        "time_scale": time_scale,
        "wall_s": round(wall, 1),
        "sweeps": sum(len(v) for v in sweeps.values()),
        "seconds_per_sweep": stats.band([s["wall_s"] for v in sweeps.values() for s in v]),
        "methods": {name: {"seeds": min(
            len({s["seed"] for s in v if s["method"] == (M.same_as(name, t) or name)})
            for t in loaded for v in (sweeps[t.task],))} for name in names},
        "run_commands": sorted({s.get("command", "") for v in sweeps.values() for s in v}),
        "loadavg_1m_at_sweep_end": stats.band([s.get("loadavg_1m", math.nan)
                                               for v in sweeps.values() for s in v]),
        "per_task": {},
        "targets": {},
        "plots": {},
    }
    for task, summary in summaries.items():
        for name, figures in summary["methods"].items():
            payload["methods"][name][task] = figures
        payload["per_task"][task] = {k: v for k, v in summary.items() if k != "methods"}
        payload["targets"][task] = targets(summary, M.DEFAULT)
        png = plots / f"search_regret_{task}{'.quick' if args.quick else ''}.png"
        payload["plots"][task] = str(plot(task, summary, png, M.DEFAULT))
        print_summary(task, summary)
    regrets = {t.task: seed_regrets(t, sweeps[t.task], args.budget_trials * t.max_steps, names)
               for t in loaded}
    payload["ranking"] = ranking(summaries, regrets)
    chosen = choose_default(payload["ranking"])
    payload["default_by_rule"] = chosen
    payload["default_settings"] = M.PRODUCT_SETTINGS.get(M.DEFAULT, {})
    print("\nranking: mean rank of median regret at 25/50/100% of the budget over the tasks "
          f"(* = a product setting); seed by seed against {M.DEFAULT} (regret summed over the "
          "three points): wins/losses/ties, sign-test p")
    for row in payload["ranking"]:
        vs = row["vs_default"]
        print(f"  {row['mean_rank']:5.2f} {'*' if row['product'] else ' '} {row['method']:26s}"
              f" {vs['wins']:3d}/{vs['losses']:3d}/{vs['ties']:3d}  p={vs['p']:.3f}")
    print(f"default: {M.DEFAULT}; the rule (beat it seed by seed, Holm-corrected sign test at "
          f"0.05, and rank above it) picks: {chosen}")
    if args.keep_rows:
        payload["traces"] = {task: [{"method": s["method"], "seed": s["seed"],
                                     "events": [e.__dict__ for e in s["events"]]}
                                    for s in v] for task, v in sweeps.items()}
    common.write_result(out, name=NAME, command=common.command_line(argv, MODULE),
                        quick=args.quick, load=load, payload=stats.finite_or_none(payload))
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"{payload['sweeps']} sweeps in {wall:.0f} s", file=sys.stderr)
    return payload


if __name__ == "__main__":
    main()
