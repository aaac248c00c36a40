"""Statistics of replayed sweeps: anytime regret, steps to a target, reach rate, selection.

A sweep's trace is its reports in the order Tune received them (`Event`), each with the steps
and wall seconds charged to all trials so far. Pure Python: the tests check it on hand-made
traces without Ray.

- best so far at x: the best validation metric of the reports whose cumulative cost <= x;
- regret at x: table best - best so far (mode max), best so far - table best (mode min);
  infinite before the first report;
- steps to reach a target: the cumulative steps of the first report at or beyond it (within the
  budget), infinite when the sweep never got there;
- the selected configuration: the report (trial + step) with the best validation metric within
  the budget; its test metric is the test value recorded in that same row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

INF = math.inf
NEAR_BEST_POINTS = 0.005  # 0.5 points of an F1 / accuracy in [0, 1]
NEAR_BEST_RELATIVE = 0.005  # 0.5% of a loss


@dataclass(frozen=True)
class Event:
    trial: str
    cum_steps: float
    cum_wall: float
    value: float  # the validation metric of this report
    test: float  # the test metric recorded in the same row
    candidate: int = -1
    seed: int = -1
    report_index: int = -1
    row: dict[str, Any] = field(default_factory=dict, compare=False)


def better(a: float, b: float, mode: str) -> bool:
    return a > b if mode == "max" else a < b


def _within(events: Sequence[Event], limit: float, by: str) -> list[Event]:
    key = "cum_steps" if by == "steps" else "cum_wall"
    return [e for e in events if getattr(e, key) <= limit + 1e-9]


def selected(events: Sequence[Event], mode: str, budget: float = INF,
             by: str = "steps") -> Event | None:
    """The report with the best validation metric within the budget (the first of ties)."""
    best: Event | None = None
    for e in _within(events, budget, by):
        if math.isfinite(e.value) and (best is None or better(e.value, best.value, mode)):
            best = e
    return best


def best_so_far(events: Sequence[Event], x: float, mode: str, by: str = "steps") -> float | None:
    chosen = selected(events, mode, x, by)
    return None if chosen is None else chosen.value


def regret(value: float | None, table_best: float, mode: str) -> float:
    if value is None:
        return INF
    return table_best - value if mode == "max" else value - table_best


def regret_curve(events: Sequence[Event], xs: Sequence[float], table_best: float, mode: str,
                 by: str = "steps") -> list[float]:
    return [regret(best_so_far(events, x, mode, by), table_best, mode) for x in xs]


def reaches(value: float, target: float, mode: str) -> bool:
    return value >= target - 1e-12 if mode == "max" else value <= target + 1e-12


def steps_to_reach(events: Sequence[Event], target: float, mode: str,
                   budget: float = INF) -> float:
    for e in _within(events, budget, "steps"):
        if math.isfinite(e.value) and reaches(e.value, target, mode):
            return e.cum_steps
    return INF


def near_best_target(table_best: float, mode: str) -> float:
    """Within 0.5 points of the table's best (0.005 for a metric in [0, 1]; 0.5% for a loss)."""
    if mode == "max":
        return table_best - NEAR_BEST_POINTS
    return table_best * (1 + NEAR_BEST_RELATIVE) if table_best > 0 else table_best + 0.005


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile that keeps infinities (a missed target) infinite."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    frac = pos - lo
    if frac == 0 or lo == hi:
        return xs[lo]
    if math.isinf(xs[hi]) or math.isinf(xs[lo]):
        return xs[hi] if frac > 0 else xs[lo]
    return xs[lo] + (xs[hi] - xs[lo]) * frac


def median(values: Sequence[float]) -> float:
    return quantile(values, 0.5)


def band(values: Sequence[float]) -> dict[str, float]:
    values = [v for v in values if not math.isnan(v)]
    return {"p10": quantile(values, 0.1), "median": median(values), "p90": quantile(values, 0.9)}


def finite_or_none(value: Any) -> Any:
    """JSON has no infinity: an infinite (never reached) or NaN figure is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


FRACTIONS = ("0.25", "0.5", "1.0")


def summarize_method(traces: Sequence[Sequence[Event]], *, mode: str, table_best: float,
                     budget: float, target_random4x: float, random4x_steps: float,
                     wall_budget: float, best_candidates: set[int] | None = None,
                     own_budget: float | None = None, grid_points: int = 48) -> dict[str, Any]:
    """One method's figures on one table from its per-seed traces (all at the same budget)."""
    own = own_budget or budget
    near = near_best_target(table_best, mode)
    to_a = [steps_to_reach(t, target_random4x, mode, own) for t in traces]
    to_b = [steps_to_reach(t, near, mode, own) for t in traces]
    fractions = list(FRACTIONS) + ([f"{own / budget:g}"] if own > budget else [])
    regrets = {f: [regret(best_so_far(t, float(f) * budget, mode), table_best, mode)
                   for t in traces] for f in fractions}
    wall_regrets = {f: [regret(best_so_far(t, float(f) * wall_budget, mode, "wall"),
                               table_best, mode) for t in traces] for f in FRACTIONS}
    picks = [selected(t, mode, own) for t in traces]
    # the same spacing for every method: a 4x budget's curve has 4x the points
    xs = [budget * i / grid_points for i in range(1, round(grid_points * own / budget) + 1)]
    walls = [wall_budget * i / grid_points for i in range(1, grid_points + 1)]
    curves = [regret_curve(t, xs, table_best, mode) for t in traces]
    wall_curves = [regret_curve(t, walls, table_best, mode, "wall") for t in traces]

    def curve_band(rows: list[list[float]], grid: list[float]) -> dict[str, list[float]]:
        cols = list(zip(*rows, strict=True)) if rows else []
        return {"x": grid, "p10": [quantile(c, 0.1) for c in cols],
                "median": [median(c) for c in cols], "p90": [quantile(c, 0.9) for c in cols]}

    ratios = [s / random4x_steps for s in to_a]
    out: dict[str, Any] = {
        "seeds": len(traces),
        "budget_steps": own,
        "median_steps_ratio_to_random4x": median(ratios),
        "steps_ratio_to_random4x": band(ratios),
        "reach_rate": sum(math.isfinite(s) for s in to_a) / max(len(traces), 1),
        "median_steps_to_random4x_best": median(to_a),
        "reach_rate_near_best": sum(math.isfinite(s) for s in to_b) / max(len(traces), 1),
        "median_steps_to_near_best": median(to_b),
        "median_regret": {f: median(v) for f, v in regrets.items()},
        "p10_regret": {f: quantile(v, 0.1) for f, v in regrets.items()},
        "p90_regret": {f: quantile(v, 0.9) for f, v in regrets.items()},
        "median_regret_wall": {f: median(v) for f, v in wall_regrets.items()},
        "selected_validation": band([p.value if p else math.nan for p in picks]),
        "selected_test": band([p.test if p else math.nan for p in picks]),
        "selected_candidates": [p.candidate if p else None for p in picks],
        "curve_steps": curve_band(curves, xs),
        "curve_wall": curve_band(wall_curves, walls),
    }
    if best_candidates is not None:
        out["selected_best_candidate_rate"] = sum(
            p is not None and p.candidate in best_candidates for p in picks) / max(len(picks), 1)
    return out


def final_best(trace: Sequence[Event], mode: str, budget: float = INF) -> float:
    value = best_so_far(trace, budget, mode)
    return math.nan if value is None else value
