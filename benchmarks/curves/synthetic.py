"""A synthetic learning-curve table whose best candidate is known by construction.

Same schema as a built table (`table.check_table` passes), same dimensions kinds and the same
Sobol design (`tasks.Task.candidates`), so the replay, the methods and the statistics run on
it exactly as on a real table; `compare --quick` and the tests use it.

The validation F1 of a candidate peaks at the coordinates of one LoRA candidate (`best`): its
final F1 is `PEAK`, every other candidate's falls off with its unit distance to it (a
categorical mismatch counts a fixed amount, `WEIGHTS`), so the runner-up is points below.
Curves rise with the step (faster at a higher learning rate), each training seed adds a small
noise (`NOISE`, well below the gap), the test F1 follows the validation F1 with its own noise,
and wall seconds per step are larger for full fine-tuning and a larger rank.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

from benchmarks.curves.replay import candidate_point
from benchmarks.curves.tasks import LR, WARMUP, Dimension, Task

PEAK = 0.72
FLOOR = 0.30
WIDTH = 0.08  # squared (weighted) unit distance at which the bonus falls to 1/e
NOISE = 0.004
SCHEDULE = [12, 24, 36, 48]
TOKENS_PER_STEP = 32 * 48
DIMENSIONS = (LR, Dimension("train.finetune", "choice", values=("lora", "full")), WARMUP)


def quick_task(num_candidates: int = 16) -> Task:
    return Task(name="synthetic", description="synthetic: F1 peaks at a known LoRA candidate",
                metric="eval_f1", test_metric="test_f1", mode="max", dimensions=DIMENSIONS,
                num_candidates=num_candidates, seeds=(0, 1))


# squared-distance weight per dimension: the learning rate dominates, as it does in practice
WEIGHTS = {"train.learning_rate": 1.0, "train.finetune": 0.25, "train.warmup_ratio": 0.1}


def _unit_distance(a: dict[str, Any], b: dict[str, Any], dims: tuple[Dimension, ...]) -> float:
    total = 0.0
    for d in dims:
        if d.kind == "choice":
            total += WEIGHTS[d.key] * (a[d.key] != b[d.key])
        else:
            total += WEIGHTS[d.key] * (d.to_unit(a[d.key]) - d.to_unit(b[d.key])) ** 2
    return math.sqrt(total)


def best_candidate(candidates: list[dict[str, Any]]) -> int:
    """The LoRA candidate whose learning rate is nearest the middle of the log range."""
    lora = [i for i, c in enumerate(candidates) if c["train.finetune"] == "lora"]
    return min(lora, key=lambda i: (abs(LR.to_unit(candidates[i]["train.learning_rate"]) - 0.6),
                                    i))


def final_f1(point: dict[str, Any], peak: dict[str, Any]) -> float:
    d = _unit_distance(point, peak, DIMENSIONS)
    return FLOOR + (PEAK - FLOOR) * math.exp(-(d ** 2) / WIDTH)


def synthetic_table(num_candidates: int = 16, seeds: tuple[int, ...] = (0, 1),
                    noise: float = NOISE) -> dict[str, Any]:
    """The table as a JSON-ready dict (what `build` writes), and `build.best` = its best."""
    task = quick_task(num_candidates)
    candidates = task.candidates()
    best = best_candidate(candidates)
    peak = candidate_point(candidates[best], DIMENSIONS)
    rng = random.Random(0)
    runs = []
    for i, c in enumerate(candidates):
        point = candidate_point(c, DIMENSIONS)
        target = final_f1(point, peak)
        speed = 0.4 + 1.6 * LR.to_unit(point["train.learning_rate"])  # higher lr learns faster
        per_step = 0.6 if point["train.finetune"] == "full" else 0.25
        for s in seeds:
            offset = rng.gauss(0.0, noise)
            curve: dict[str, list[Any]] = {k: [] for k in (
                "step", "tokens", "wall_s", "eval_loss", "eval_f1", "eval_accuracy",
                "test_f1", "test_loss", "train_loss")}
            for step in SCHEDULE:
                progress = 1.0 - math.exp(-speed * step / 16.0)
                f1 = FLOOR * 0.8 + (target + offset - FLOOR * 0.8) * progress
                test = f1 + rng.gauss(0.0, noise)
                curve["step"].append(step)
                curve["tokens"].append(float(step * TOKENS_PER_STEP))
                curve["wall_s"].append(round(step * per_step + 2.0, 3))
                curve["eval_loss"].append(round(1.6 - 1.2 * f1, 6))
                curve["eval_f1"].append(round(f1, 6))
                curve["eval_accuracy"].append(round(min(f1 + 0.05, 1.0), 6))
                curve["test_f1"].append(round(test, 6))
                curve["test_loss"].append(round(1.6 - 1.2 * test, 6))
                curve["train_loss"].append(round(1.7 - 1.2 * f1, 6))
            runs.append({"candidate": i, "seed": s, "status": "ok", "curve": curve})
    return {
        "task": task.name, "description": task.description, "metric": task.metric,
        "test_metric": task.test_metric, "mode": task.mode,
        "dimensions": [{"key": d.key, "kind": d.kind, "low": d.low, "high": d.high,
                        "values": list(d.values)} for d in DIMENSIONS],
        "candidates": [{"id": i, "config": c} for i, c in enumerate(candidates)],
        "schedule": SCHEDULE, "runs": runs,
        "build": {"command": "benchmarks.curves.synthetic", "synthetic": True, "best": best,
                  "quick": True},
    }


def write_synthetic(path: Path, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(synthetic_table(**kwargs), separators=(",", ":")) + "\n")
    return path
