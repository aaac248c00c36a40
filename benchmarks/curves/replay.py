"""A Tune trainable that replays a candidate's recorded curve from a learning-curve table.

Every Tune searcher and scheduler runs unchanged against it: the trial reports the same
columns at the same steps as the real training run did, and is charged that run's recorded
optimizer steps, tokens and wall seconds. A sweep of this trainable takes seconds.

Design decisions (why none of them favours a method):

- **The search space is the table's own dimensions, continuous** (`search_space`): log
  dimensions as `tune.loguniform`, linear ones as `tune.uniform` over the table's range,
  choices as `tune.choice`. A sampled configuration is mapped to the **nearest candidate**
  (`CandidateIndex.nearest`) in the unit cube the Sobol design was drawn in: Euclidean
  distance on `Dimension.to_unit` coordinates (log dimensions on the log scale, every
  dimension normalised to [0, 1], a choice among numbers such as `lora.r` or
  `lora.alpha_ratio` at its index position, as the design placed it), plus a large penalty
  (`MISMATCH`, more than any unit distance) per differing value of a categorical choice
  (`train.finetune`: LoRA or full), which so always matches exactly. LoRA's dimensions
  (`lora.*`) are inactive for a full fine-tuning sample and candidate (training ignores
  them) and are left out of the distance there.
  Why numeric choices are not matched exactly too: 64 candidates hold about 32 LoRA ones
  over 4 ranks x 3 alpha ratios, about 2.7 per (rank, ratio) pair; matching those exactly
  would leave 2-3 learning rates per pair, so the learning rate a searcher asked for (the
  hyperparameter that matters most) would mostly be ignored in favour of the two that
  matter least. In the design's own metric the nearest of 32 points in 5 dimensions is
  close in every coordinate.
  Why it favours no method: every method sees the same piecewise-constant function on the
  same continuous space (the candidates' Voronoi cells; the Sobol design makes them about
  equal in volume, so uniform sampling hits every candidate about equally often); none is
  handed the candidate list, and none can tell where the cells are other than by sampling.
  The alternative, a `tune.choice` over candidate ids, would turn TPE into a categorical
  bandit with no notion of neighbouring configurations.
- **`lora.alpha_ratio`**: the table's dimension is the ratio, its candidates store
  `lora.alpha = alpha_ratio * r`; the ratio is recovered as `alpha / r` (`candidate_point`).
- **The training seed** of a trial is drawn deterministically from a hash of (search seed,
  the sampled configuration) (`draw_seed`): replays carry the table's run-to-run noise,
  a sweep is reproducible whatever order its concurrent trials finish in, and resampling the
  same point (e.g. a configuration a multi-fidelity method re-runs at a larger budget) gets
  the same run.
- **Costs**: each report is charged the recorded steps, tokens and wall seconds since the
  trial's previous report (`delta_steps`, `delta_wall_s`) and the totals so far (`step`,
  `tokens_seen`, `charged_wall_s`); the trial sleeps `delta_wall * time_scale` before each
  report so concurrent trials finish in a realistic order (cheap ones first).
- **Checkpoints** (`checkpoints=True`): a tiny JSON with the next report index, so pausing
  schedulers (HyperBandForBOHB, the one-round top-k scheduler) resume a trial where it was and
  are not charged twice for its steps.
- **Budgets below the full curve**: a config key `FIDELITY_KEY` (set by a multi-fidelity
  searcher that runs each job to a given budget, e.g. DEHB) stops the replay at the first
  scheduled step >= that budget.
- **A run that diverged**: its non-finite metric is reported as the worst finite value of that
  column in the table (same ranking, and every searcher can digest it).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

from benchmarks.curves.table import Table
from benchmarks.curves.tasks import Dimension

MISMATCH = 10.0  # distance added per differing categorical value: larger than any unit distance
FIDELITY_KEY = "_fidelity"  # optional config key: replay only up to this many steps
INACTIVE_WHEN_FULL = "lora."  # dimensions training ignores when train.finetune == "full"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train": {"learning_rate": v}}` -> `{"train.learning_rate": v}`."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"train.learning_rate": v}` -> `{"train": {"learning_rate": v}}` (the product's shape)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def search_space(dimensions: tuple[Dimension, ...]) -> dict[str, Any]:
    """The Tune param space of a table: its dimensions, continuous where they are."""
    from ray import tune

    flat: dict[str, Any] = {}
    for d in dimensions:
        if d.kind == "log":
            flat[d.key] = tune.loguniform(d.low, d.high)
        elif d.kind == "linear":
            flat[d.key] = tune.uniform(d.low, d.high)
        else:
            flat[d.key] = tune.choice(list(d.values))
    return nest(flat)


def candidate_point(candidate: Mapping[str, Any], dimensions: tuple[Dimension, ...]
                    ) -> dict[str, Any]:
    """A candidate's value on every table dimension (`lora.alpha_ratio` = alpha / r)."""
    point = dict(candidate)
    keys = {d.key for d in dimensions}
    if "lora.alpha_ratio" in keys and "lora.alpha_ratio" not in point and "lora.alpha" in point:
        ratio = float(point["lora.alpha"]) / float(point["lora.r"])
        choices = next(d for d in dimensions if d.key == "lora.alpha_ratio").values
        # the stored alpha is a float; give back the dimension's own value when it is one
        point["lora.alpha_ratio"] = next((v for v in choices if math.isclose(v, ratio)), ratio)
    return {d.key: point[d.key] for d in dimensions}


def _inactive(point: Mapping[str, Any], key: str) -> bool:
    return point.get("train.finetune") == "full" and key.startswith(INACTIVE_WHEN_FULL)


def ordinal(d: Dimension) -> bool:
    """A choice among numbers (a LoRA rank, an alpha ratio): ordered, placed by `to_unit`."""
    return d.kind == "choice" and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in d.values)


def _choice_unit(d: Dimension, value: Any) -> float:
    if value in d.values:
        return d.to_unit(value)
    nearest = min(d.values, key=lambda v: abs(float(v) - float(value)))
    return d.to_unit(nearest)


def distance(sample: Mapping[str, Any], point: Mapping[str, Any],
             dimensions: tuple[Dimension, ...]) -> float:
    """Euclidean distance on the design's unit coordinates (`Dimension.to_unit`: log scale for
    log dimensions, index position for a choice among numbers) + MISMATCH per differing value
    of a categorical (non-numeric) choice."""
    squares, mismatches = 0.0, 0
    for d in dimensions:
        if _inactive(sample, d.key) and _inactive(point, d.key):
            continue
        if ordinal(d):
            squares += (_choice_unit(d, sample[d.key]) - _choice_unit(d, point[d.key])) ** 2
        elif d.kind == "choice":
            mismatches += sample[d.key] != point[d.key]
        else:
            u = min(max(d.to_unit(float(sample[d.key])), 0.0), 1.0)
            squares += (u - d.to_unit(float(point[d.key]))) ** 2
    return math.sqrt(squares) + MISMATCH * mismatches


class CandidateIndex:
    """Nearest-candidate look-up for one table (the candidates' points computed once)."""

    def __init__(self, candidates: list[dict[str, Any]], dimensions: tuple[Dimension, ...]):
        self.dimensions = dimensions
        self.points = [candidate_point(c, dimensions) for c in candidates]

    def nearest(self, sample: Mapping[str, Any]) -> int:
        """The index of the candidate nearest to a sampled (flat) configuration."""
        sample = dict(sample)
        for d in self.dimensions:
            if d.key not in sample:
                raise KeyError(f"the sampled configuration has no {d.key!r}: {sorted(sample)}")
        return min(range(len(self.points)),
                   key=lambda i: (distance(sample, self.points[i], self.dimensions), i))


def nearest_candidate(table: Table, sample: Mapping[str, Any]) -> int:
    return CandidateIndex(table.candidates, table.dimensions).nearest(flatten(sample))


def draw_seed(search_seed: int, sample: Mapping[str, Any], seeds: list[int]) -> int:
    """A training seed of the table, from a hash of (search seed, sampled configuration)."""
    flat = flatten(sample)
    canon = {k: (round(v, 12) if isinstance(v, float) else v) for k, v in sorted(flat.items())
             if not k.startswith("_")}
    digest = hashlib.sha256(json.dumps([search_seed, canon], sort_keys=True, default=str)
                            .encode()).digest()
    return seeds[int.from_bytes(digest[:8], "big") % len(seeds)]


# --- search-space transforms (a method's own parametrisation, applied before the mapping) ----

def lora_lr_prior(config: dict[str, Any]) -> dict[str, Any]:
    """`train.lr_full` is the full fine-tuning rate; LoRA runs at 10x it (the LoRA paper's and
    practice's rule of thumb: LoRA wants about ten times the full fine-tuning rate)."""
    flat = flatten(config)
    base = float(flat.pop("train.lr_full"))
    flat["train.learning_rate"] = base * (10.0 if flat.get("train.finetune") == "lora" else 1.0)
    return nest(flat)


TRANSFORMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "lora_lr_prior": lora_lr_prior,
}


def _finite_floor(table: Table) -> dict[str, float]:
    """The worst finite value of every recorded column (what a non-finite value reports as)."""
    worst: dict[str, float] = {}
    for run in table.runs:
        for name, values in run.curve.items():
            finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
            if not finite:
                continue
            high = name.endswith("loss") or table.mode == "min" and name in (
                table.metric, table.test_metric)
            value = max(finite) if high else min(finite)
            worst[name] = value if name not in worst else (
                max(worst[name], value) if high else min(worst[name], value))
    return worst


def report_rows(table: Table, candidate: int, seed: int) -> list[dict[str, Any]]:
    """What the replay reports at each scheduled step of one run (without the sleep)."""
    run = table.run(candidate, seed)
    floor = _finite_floor(table)
    rows = []
    prev_step, prev_wall, prev_tokens = 0, 0.0, 0.0
    for i in range(len(table.schedule)):
        row = run.at(i)
        metrics: dict[str, Any] = {}
        for name, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = floor.get(name, 0.0)
            metrics[name] = value
        step, wall, tokens = int(row["step"]), float(row["wall_s"]), float(row["tokens"])
        metrics.update({
            "step": step, "tokens_seen": tokens, "charged_wall_s": wall,
            "delta_steps": step - prev_step, "delta_wall_s": wall - prev_wall,
            "delta_tokens": tokens - prev_tokens,
            "candidate": candidate, "table_seed": seed, "report_index": i,
        })
        rows.append(metrics)
        prev_step, prev_wall, prev_tokens = step, wall, tokens
    return rows


def wait_for_peers(folder: str, name: str, peers: int, timeout_s: float = 20.0) -> float:
    """Start barrier: mark this trial as started, wait until `peers` trials have (or timeout).

    A replayed trial lasts a fraction of a second, less than Ray takes to start the sweep's
    other trial actors: without it the first actor would run trial after trial alone, and a
    searcher would see every result before its next suggestion, which a real sweep of 4
    concurrent trials never allows. Returns the seconds waited."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w"):
        pass
    started = time.monotonic()
    while len(os.listdir(folder)) < peers and time.monotonic() - started < timeout_s:
        time.sleep(0.01)
    return time.monotonic() - started


def replay(config: dict[str, Any], *, table: Table, search_seed: int, time_scale: float = 0.002,
           checkpoints: bool = False, transform: str | None = None,
           barrier: str | None = None, peers: int = 0) -> None:
    """The Tune function trainable (`tune.with_parameters(replay, table=..., ...)`).

    `barrier` (a folder) and `peers`: the start barrier of `wait_for_peers`, so the first
    `peers` trials of a sweep really run concurrently."""
    from ray import tune

    if barrier and peers > 1:
        wait_for_peers(barrier, tune.get_context().get_trial_id(), peers)

    sample = TRANSFORMS[transform](config) if transform else config
    index = CandidateIndex(table.candidates, table.dimensions)
    flat = flatten(sample)
    candidate = index.nearest(flat)
    seed = draw_seed(search_seed, sample, table.seeds)
    rows = report_rows(table, candidate, seed)
    budget = config.get(FIDELITY_KEY) or table.max_steps
    start = 0
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder, open(os.path.join(folder, "replay.json")) as f:
            start = int(json.load(f)["next"])
    for i in range(start, len(rows)):
        row = rows[i]
        if time_scale > 0:
            time.sleep(max(row["delta_wall_s"], 0.0) * time_scale)
        if checkpoints:
            with tempfile.TemporaryDirectory() as folder:
                with open(os.path.join(folder, "replay.json"), "w") as f:
                    json.dump({"next": i + 1, "candidate": candidate, "seed": seed}, f)
                tune.report(row, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(row)
        if row["step"] >= budget:
            break
