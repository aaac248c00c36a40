"""A learning-curve table: its schema, loading, and the checks every committed table passes.

A table is one JSON file (`benchmarks/tables/<task>.json`):

- `task`, `description`, `metric` / `test_metric` / `mode`: what is selected on, and how;
- `dimensions`: the searched dimensions (key, kind, range or values), as `tasks.Dimension`;
- `candidates`: `{"id", "config"}` with `config` keyed like a sweep's `search_space`;
- `runs`: one per (candidate, training seed): `status` and `curve`, the columns recorded at
  every evaluation (`step`, `tokens`, `wall_s`, `eval_loss`, the metric, the test metric, ...);
- `schedule`: the evaluation steps every complete curve has;
- `build`: the command that built it, machine, package versions, wall time, what was shrunk.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.curves.tasks import Dimension

TABLES = Path(__file__).resolve().parent.parent / "tables"
CURVE_COLUMNS = ("step", "tokens", "wall_s", "eval_loss")


class TableError(ValueError):
    """A table file that does not follow the schema (names the file and what is wrong)."""


@dataclass(frozen=True)
class Run:
    candidate: int
    seed: int
    status: str
    curve: dict[str, list[float]]

    def at(self, index: int) -> dict[str, float]:
        return {name: values[index] for name, values in self.curve.items()}


@dataclass(frozen=True)
class Table:
    task: str
    metric: str
    test_metric: str
    mode: str
    dimensions: tuple[Dimension, ...]
    candidates: list[dict[str, Any]]
    runs: list[Run]
    schedule: list[int]
    raw: dict[str, Any]

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.runs})

    def run(self, candidate: int, seed: int) -> Run:
        for r in self.runs:
            if r.candidate == candidate and r.seed == seed:
                return r
        raise KeyError((candidate, seed))

    def better(self, a: float, b: float) -> bool:
        """Is `a` strictly better than `b` under the table's mode?"""
        return a > b if self.mode == "max" else a < b

    def best_value(self) -> float:
        """The best validation metric any run reached at any evaluation."""
        values = [v for r in self.runs for v in r.curve[self.metric] if math.isfinite(v)]
        return max(values) if self.mode == "max" else min(values)

    @property
    def max_steps(self) -> int:
        return self.schedule[-1]


def load_table(path: Path | str) -> Table:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TableError(f"{path}: cannot read the table: {err}") from None
    problems = check_table(raw)
    if problems:
        raise TableError(f"{path}: " + "; ".join(problems))
    dims = tuple(
        Dimension(d["key"], d["kind"], d.get("low", 0.0), d.get("high", 1.0),
                  tuple(d.get("values", ())))
        for d in raw["dimensions"]
    )
    runs = [Run(r["candidate"], r["seed"], r["status"], r["curve"]) for r in raw["runs"]]
    return Table(raw["task"], raw["metric"], raw["test_metric"], raw["mode"], dims,
                 [c["config"] for c in raw["candidates"]], runs, raw["schedule"], raw)


def check_table(raw: dict[str, Any]) -> list[str]:
    """Every candidate has a run for every seed, and every run its full curve."""
    problems: list[str] = []
    for key in ("task", "metric", "test_metric", "mode", "dimensions", "candidates", "runs",
                "schedule", "build"):
        if key not in raw:
            problems.append(f"missing key {key!r}")
    if problems:
        return problems
    schedule = raw["schedule"]
    if not schedule or schedule != sorted(schedule):
        problems.append(f"schedule must be increasing steps, got {schedule}")
    columns = (*CURVE_COLUMNS, raw["metric"], raw["test_metric"])
    seeds = sorted({r["seed"] for r in raw["runs"]})
    have = {(r["candidate"], r["seed"]) for r in raw["runs"]}
    for c in raw["candidates"]:
        for s in seeds:
            if (c["id"], s) not in have:
                problems.append(f"candidate {c['id']} has no run for seed {s}")
    for r in raw["runs"]:
        where = f"run (candidate {r['candidate']}, seed {r['seed']})"
        for col in columns:
            values = r["curve"].get(col)
            if values is None:
                problems.append(f"{where}: no {col!r} column")
            elif len(values) != len(schedule):
                problems.append(f"{where}: {col!r} has {len(values)} points, the schedule "
                                f"{len(schedule)}")
        if r["curve"].get("step") not in (None, schedule):
            problems.append(f"{where}: steps {r['curve']['step']} are not the schedule")
    return problems
