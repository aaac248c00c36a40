"""Fit flags per trial from its reports: overfitting and underfitting."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

OVERFIT_TOLERANCE = 0.05  # last eval_loss worse than the best by more than this (relative)


UNDERFIT_IMPROVEMENT = 0.05  # eval_loss fell by more than this over the last third of evals


def fit_flags(
    history: pd.DataFrame, *, overfit_tolerance: float = OVERFIT_TOLERANCE,
    underfit_improvement: float = UNDERFIT_IMPROVEMENT, min_evaluations: int = 3,
) -> dict[str, Any]:
    """Flags from one trial's reports (columns eval_loss, train_loss, step, total_steps).

    overfitting: the best eval_loss came before the last evaluation, the last one is worse than
    it by more than `overfit_tolerance` (relative), and train_loss at the end is lower than at
    the best step (training still improves while validation degrades).
    underfitting: the trial ran its whole budget (last step >= total_steps), its last eval_loss
    is its best, and it fell by more than `underfit_improvement` (relative) over the last third
    of its evaluations: more steps would likely still help.
    Both need `min_evaluations` finite eval_loss values.
    """
    flags: dict[str, Any] = {"overfitting": False, "underfitting": False, "fit_note": ""}
    if not {"eval_loss", "step"} <= set(history.columns):
        return flags
    h = history.dropna(subset=["eval_loss", "step"]).drop_duplicates("step", keep="last")
    h = h[h["eval_loss"].map(math.isfinite)].sort_values("step").reset_index(drop=True)
    if len(h) < min_evaluations:
        return flags
    loss, steps = h["eval_loss"].astype(float), h["step"]
    best, last = int(loss.idxmin()), len(h) - 1
    train = h["train_loss"] if "train_loss" in h else pd.Series([math.nan] * len(h))
    rise = (loss[last] - loss[best]) / max(abs(loss[best]), 1e-12)
    if best < last and rise > overfit_tolerance and train[last] < train[best]:
        flags["overfitting"] = True
        flags["fit_note"] = (
            f"eval_loss best {loss[best]:.4g} at step {steps[best]}, last {loss[last]:.4g} at "
            f"step {steps[last]} (+{rise:.0%}) while train_loss fell {train[best]:.4g} -> "
            f"{train[last]:.4g}"
        )
        return flags
    total = h["total_steps"].iloc[-1] if "total_steps" in h else math.nan
    ran_full_budget = bool(pd.notna(total) and steps[last] >= total)
    ref = last - max(1, round(len(h) / 3))
    drop = (loss[ref] - loss[last]) / max(abs(loss[ref]), 1e-12)
    if ran_full_budget and loss[last] <= loss.min() and drop > underfit_improvement:
        flags["underfitting"] = True
        flags["fit_note"] = (
            f"eval_loss still falling at the end of the budget: {loss[ref]:.4g} at step "
            f"{steps[ref]} -> {loss[last]:.4g} at step {steps[last]} (-{drop:.0%})"
        )
    return flags


def flag_trials(histories: Mapping[str, pd.DataFrame], **thresholds: Any) -> pd.DataFrame:
    """One row per trial: trial_id, overfitting, underfitting, fit_note (see `fit_flags`).

    `histories` is `ExperimentAnalysis.trial_dataframes`: trial_id -> its reports.
    """
    rows = [{"trial_id": trial_id, **fit_flags(history, **thresholds)}
            for trial_id, history in histories.items()]
    return pd.DataFrame(rows, columns=["trial_id", "overfitting", "underfitting", "fit_note"])


def add_fit_flags(trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """`trials` (one row per trial_id) with the `flag_trials` columns; no history: no flags."""
    out = trials.merge(flag_trials(histories), on="trial_id", how="left")
    for column in ("overfitting", "underfitting"):
        out[column] = out[column].astype("boolean").fillna(False).astype(bool)
    out["fit_note"] = out["fit_note"].fillna("")
    return out
