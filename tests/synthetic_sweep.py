"""A finished sweep made up in memory (no Ray): what `load_results` and the histories look like.

Six trials over learning rate (log) and LoRA rank; three stopped early by the scheduler, one
overfitting, one underfitting, so every part of the report has something to show.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from sweep_helpers import lm_config

from orchestrator.config.loading import load_config
from orchestrator.experiment.results import SweepResult

TOTAL_STEPS = 30

# trial_id -> (learning_rate, lora.r, last_step, curve kind)
TRIALS = {
    "t_00000": (1e-2, 4, 30, "overfit"),
    "t_00001": (3e-3, 8, 30, "good"),
    "t_00002": (1e-5, 2, 10, "flat"),
    "t_00003": (3e-5, 4, 10, "flat"),
    "t_00004": (1e-4, 8, 20, "slow"),
    "t_00005": (1e-3, 2, 30, "underfit"),
}


def curve(kind: str, step: int) -> tuple[float, float]:
    """(eval_loss, train_loss) at `step` for each kind of trial."""
    t = step / TOTAL_STEPS
    if kind == "overfit":
        return 2.0 - 1.6 * t + 2.2 * max(t - 0.4, 0) ** 2 * 3, 2.2 - 1.9 * t
    if kind == "good":
        return 0.9 + 1.4 * math.exp(-5 * t), 1.0 + 1.5 * math.exp(-5 * t)
    if kind == "underfit":
        return 2.3 - 1.2 * t, 2.4 - 1.2 * t
    if kind == "slow":
        return 2.3 - 0.5 * t, 2.4 - 0.5 * t
    return 2.3 - 0.05 * t, 2.4 - 0.05 * t


def histories() -> dict[str, pd.DataFrame]:
    out = {}
    for trial_id, (_, _, last_step, kind) in TRIALS.items():
        steps = range(5, last_step + 1, 5)
        out[trial_id] = pd.DataFrame(
            [{"step": s, "eval_loss": curve(kind, s)[0], "train_loss": curve(kind, s)[1],
              "total_steps": TOTAL_STEPS, "training_iteration": s // 5} for s in steps]
        )
    return out


def sweep_result(model_dir: Path, trial_ids: list[str] | None = None,
                 search_space: dict | None = None, **overrides: object) -> SweepResult:
    """A SweepResult as `load_results` returns it, for the trials in `trial_ids`; `overrides`
    go into the sweep config."""
    space = search_space if search_space is not None else {
        "train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 3e-2},
        "lora.r": {"type": "choice", "values": [2, 4, 8]},
    }
    config = load_config(lm_config(model_dir, name="synthetic", search_space=space,
                                   train={"max_steps": TOTAL_STEPS, "eval_every_steps": 5},
                                   **overrides))
    runs = histories()
    rows = []
    for trial_id in trial_ids or list(TRIALS):
        lr, rank, last_step, _ = TRIALS[trial_id]
        h = runs[trial_id]
        rows.append({
            "trial_id": trial_id, "status": "TERMINATED", "train.learning_rate": lr,
            "lora.r": rank, "reports": len(h), "last_step": last_step,
            "total_steps": TOTAL_STEPS, "best_eval_loss": float(h["eval_loss"].min()),
            "last_eval_loss": float(h["eval_loss"].iloc[-1]), "diverged": False,
            "stopped_early": last_step < TOTAL_STEPS,
        })
    trials = pd.DataFrame(rows).sort_values("best_eval_loss")
    best = trials.iloc[0]
    best_history = runs[best["trial_id"]]
    best_row = best_history.loc[best_history["eval_loss"].idxmin()].to_dict()
    return SweepResult(
        experiment_path=str(model_dir.parent / "synthetic"), metric="eval_loss", mode="min",
        best_trial_id=str(best["trial_id"]),
        best_config={"train": {"learning_rate": best["train.learning_rate"]},
                     "lora": {"r": int(best["lora.r"])}},
        best_metrics=best_row, best_checkpoint=None, trials=trials,
        baseline={"eval_loss": 2.31}, config=config,
    )
