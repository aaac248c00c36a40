"""Fit flags per trial from its reports: overfitting and underfitting, allowing for noise.

A change in a metric between two evaluations counts only when it is larger than all of

- `tolerance x |reference value|`: large relative to the metric (5% by default);
- the metric's smallest meaningful change (`min_meaningful_change`): 0.01 nats of loss (a
  1% change of perplexity) or 0.01 of a share of examples (accuracy, precision, recall, F1,
  per class too, exact match: one percentage point); a relative rule alone calls
  0.0013 -> 0.0012 nats an 8% improvement;
- `NOISE_Z` standard errors of the difference of two evaluations, where the reports say how
  noisy an evaluation is (`eval_loss_se`, `eval_examples`, `eval_generation_examples`; see
  `metric_standard_error`).

That is: statistically distinguishable from another draw of the validation set, and large
enough to matter. Each rule alone fails somewhere: relative near zero, absolute across loss
scales, a standard error on a large validation set (tiny changes become significant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from trainables.config import is_better
from trainables.metrics import rate_metric_sample_key

OVERFIT_TOLERANCE = 0.05  # last eval worse than the best by more than this (relative)
UNDERFIT_IMPROVEMENT = 0.05  # eval improved by more than this over the last third of evals
NOISE_Z = 2.0  # standard errors a change must exceed: chance alone does it ~5% of the time
LOSS_MIN_CHANGE = 0.01  # nats per item: exp(0.01) - 1 = 1% of perplexity
RATE_MIN_CHANGE = 0.01  # a share of examples (in [0, 1]): one percentage point


def min_meaningful_change(metric: str) -> float:
    """The smallest change of `metric` worth a flag: 0 for metrics of unknown scale."""
    if metric.endswith("loss"):
        return LOSS_MIN_CHANGE
    if rate_metric_sample_key(metric) is not None:
        return RATE_MIN_CHANGE
    return 0.0


def metric_standard_error(metric: str, report: Mapping[str, Any]) -> float:
    """One evaluation's standard error of `metric`, from what the report says; 0 if unknown.

    loss: `eval_loss_se`, measured by the trainable from per-example losses. perplexity:
    perplexity x `eval_loss_se` (delta method). A share p of n examples (accuracy, precision,
    recall, F1; n = `eval_examples`; exact match: n = `eval_generation_examples`, the generation
    sample): sqrt(p (1 - p) / n), a binomial standard error (macro and per-class ratios count
    classes each smaller than n, so their true noise is larger and this is a lower bound).
    """
    prefix = metric.split("_", 1)[0] if "_" in metric else "eval"  # test_perplexity -> test_loss_se
    value = _finite(report.get(metric))
    if metric.endswith("loss"):
        return _finite(report.get(f"{metric}_se")) or 0.0
    if metric.endswith("perplexity") and value is not None:
        return value * (_finite(report.get(f"{prefix}_loss_se")) or 0.0)
    sample = rate_metric_sample_key(metric)
    examples = _finite(report.get(sample)) if sample else None
    if value is not None and examples:
        p = min(max(value, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / examples)
    return 0.0


def change_floor(metric: str, reference: float, tolerance: float,
                 a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """How large a change of `metric` between reports `a` and `b` must be to count."""
    noise = NOISE_Z * math.hypot(metric_standard_error(metric, a), metric_standard_error(metric, b))
    return max(tolerance * abs(reference), min_meaningful_change(metric), noise)


def fit_flags(
    history: pd.DataFrame, *, metric: str = "eval_loss", mode: str = "min",
    overfit_tolerance: float = OVERFIT_TOLERANCE,
    underfit_improvement: float = UNDERFIT_IMPROVEMENT, min_evaluations: int = 3,
) -> dict[str, Any]:
    """Flags from one trial's reports (columns `metric`, train_loss, step, total_steps).

    overfitting: the best `metric` came before the last evaluation, the last one is worse than
    it by more than the change floor (`change_floor` with `overfit_tolerance`), and train_loss
    fell from the best step to the last by more than `LOSS_MIN_CHANGE` (training still improves
    while validation degrades).
    underfitting: the trial ran its whole budget (last step >= total_steps), its last `metric`
    is its best, and it improved by more than the change floor (with `underfit_improvement`)
    over the last third of its evaluations: more steps would likely still help.
    Both need `min_evaluations` finite values of `metric`.
    """
    flags: dict[str, Any] = {"overfitting": False, "underfitting": False, "fit_note": ""}
    if not {metric, "step"} <= set(history.columns):
        return flags
    h = history.dropna(subset=[metric, "step"]).drop_duplicates("step", keep="last")
    h = h[h[metric].map(math.isfinite)].sort_values("step").reset_index(drop=True)
    if len(h) < min_evaluations:
        return flags
    values, steps = h[metric].astype(float), h["step"]
    best = int(values.idxmin() if mode == "min" else values.idxmax())
    last = len(h) - 1
    reports = h.to_dict("records")
    train = h["train_loss"] if "train_loss" in h else pd.Series([math.nan] * len(h))
    worse = abs(values[last] - values[best])  # the best is the best: never better than it
    floor = change_floor(metric, values[best], overfit_tolerance, reports[best], reports[last])
    train_fell = train[best] - train[last] > LOSS_MIN_CHANGE
    if best < last and worse > floor and train_fell:
        flags["overfitting"] = True
        flags["fit_note"] = (
            f"{metric} best {values[best]:.4g} at step {steps[best]}, last {values[last]:.4g} "
            f"at step {steps[last]} ({_relative(values[last], values[best])}, beyond the noise "
            f"floor {floor:.2g}) while train_loss fell {train[best]:.4g} -> {train[last]:.4g}"
        )
        return flags
    total = h["total_steps"].iloc[-1] if "total_steps" in h else math.nan
    ran_full_budget = bool(pd.notna(total) and steps[last] >= total)
    ref = last - max(1, round(len(h) / 3))
    gain = abs(values[last] - values[ref])
    floor = change_floor(metric, values[ref], underfit_improvement, reports[ref], reports[last])
    improved = is_better(values[last], values[ref], mode) and gain > floor
    if ran_full_budget and values[last] == values[best] and improved:
        flags["underfitting"] = True
        flags["fit_note"] = (
            f"{metric} still improving at the end of the budget: {values[ref]:.4g} at step "
            f"{steps[ref]} -> {values[last]:.4g} at step {steps[last]} "
            f"({_relative(values[last], values[ref])}, beyond the noise floor {floor:.2g})"
        )
    return flags


def _relative(value: float, reference: float) -> str:
    return f"{(value - reference) / max(abs(reference), 1e-12):+.0%}"


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def flag_trials(histories: Mapping[str, pd.DataFrame], **options: Any) -> pd.DataFrame:
    """One row per trial: trial_id, overfitting, underfitting, fit_note (see `fit_flags`).

    `histories` is `ExperimentAnalysis.trial_dataframes`: trial_id -> its reports.
    """
    rows = [{"trial_id": trial_id, **fit_flags(history, **options)}
            for trial_id, history in histories.items()]
    return pd.DataFrame(rows, columns=["trial_id", "overfitting", "underfitting", "fit_note"])


def add_fit_flags(trials: pd.DataFrame, histories: Mapping[str, pd.DataFrame],
                  **options: Any) -> pd.DataFrame:
    """`trials` (one row per trial_id) with the `flag_trials` columns; no history: no flags.

    `options` go to `fit_flags` (metric and mode: the sweep's).
    """
    out = trials.merge(flag_trials(histories, **options), on="trial_id", how="left")
    for column in ("overfitting", "underfitting"):
        out[column] = out[column].astype("boolean").fillna(False).astype(bool)
    out["fit_note"] = out["fit_note"].fillna("")
    return out
