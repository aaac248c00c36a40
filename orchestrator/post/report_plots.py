"""The report's figures (base64 PNG for `<img src=data:>`), and the importance numbers that
one of them shows.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot): no global state, no
display backend, safe to call from any thread.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_BEST_COLOR, _STOP_COLOR = "#111111", "#d62728"
_MAX_LEGEND_TRIALS = 12


@dataclass
class Importance:
    values: dict[str, float]  # parameter -> share of variance, most important first
    method: str
    note: str = ""


def _optuna_value(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) else json.dumps(value)


def param_importances(trials: pd.DataFrame, params: list[str], metric_column: str, mode: str,
                      log_params: set[str]) -> Importance:
    """fANOVA importances on an optuna study rebuilt from the trials (their best values)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    method = "fANOVA"
    data = trials[trials[metric_column].map(lambda v: v is not None and math.isfinite(v))]
    if len(data) < 2:
        return Importance({}, method, f"needs at least 2 trials with a {metric_column}; "
                                      f"this sweep has {len(data)}")
    varying = [p for p in params if data[p].map(_optuna_value).nunique() > 1]
    fixed = [p for p in params if p not in varying]
    if not varying:
        return Importance({}, method, "no searched hyperparameter took more than one value")
    if data[metric_column].nunique() < 2:
        return Importance({}, method, f"every trial reached the same {metric_column}")
    distributions: dict[str, Any] = {}
    for p in varying:
        column = data[p]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            low, high = float(column.min()), float(column.max())
            distributions[p] = FloatDistribution(low, high, log=p in log_params and low > 0)
        else:
            distributions[p] = CategoricalDistribution(sorted(set(column.map(_optuna_value))))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="minimize" if mode == "min" else "maximize")
        for _, row in data.iterrows():
            params_of_row = {p: (float(row[p]) if isinstance(distributions[p], FloatDistribution)
                                 else _optuna_value(row[p])) for p in varying}
            study.add_trial(optuna.trial.create_trial(
                params=params_of_row, distributions=distributions, value=float(row[metric_column])
            ))
        evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
        values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    finally:
        optuna.logging.set_verbosity(verbosity)
    notes = []
    if len(varying) == 1:
        notes.append(f"only {varying[0]} varied, so it carries all the importance")
    if fixed:
        notes.append(f"not varied, left out: {', '.join(fixed)}")
    if len(data) < 8:
        notes.append(f"from {len(data)} trials only: a rough estimate")
    clean = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    return Importance(clean, method, "; ".join(notes))


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _colormap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name]


def to_png_base64(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _step_column(history: pd.DataFrame) -> str:
    return "step" if "step" in history else "training_iteration"


def _maybe_log_y(ax: Any, values: Sequence[float]) -> None:
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 20:
        ax.set_yscale("log")


def learning_curves(
    histories: Mapping[str, pd.DataFrame], trials: pd.DataFrame, metric: str,
    best_trial_id: str, baseline: float | None = None,
) -> str:
    """Metric and train_loss vs optimizer step, one line per trial; an X where the scheduler
    stopped a trial, the best trial in black, the untrained model as a dashed line."""
    from matplotlib.lines import Line2D

    stopped = dict(zip(trials["trial_id"], trials["stopped_early"], strict=True))
    fig = _figure(12, 4.2)
    panels = fig.subplots(1, 2)
    cmap = _colormap("tab20")
    with_legend = len(histories) <= _MAX_LEGEND_TRIALS
    all_values: dict[str, list[float]] = {metric: [], "train_loss": []}
    for i, (trial_id, history) in enumerate(sorted(histories.items())):
        if history.empty:
            continue
        history = history.sort_values(_step_column(history))
        is_best = trial_id == best_trial_id
        color = _BEST_COLOR if is_best else cmap(i % 20)
        for ax, column in zip(panels, (metric, "train_loss"), strict=True):
            if column not in history:
                continue
            points = history[[_step_column(history), column]].dropna()
            points = points[points[column].map(math.isfinite)]
            if points.empty:
                continue
            all_values[column] += points[column].tolist()
            ax.plot(points.iloc[:, 0], points[column], color=color,
                    linewidth=2.6 if is_best else 1.2, alpha=1.0 if is_best else 0.75,
                    marker="o", markersize=2.5, zorder=3 if is_best else 2,
                    label=f"{trial_id}{' (best)' if is_best else ''}")
            if stopped.get(trial_id, False):
                ax.scatter(points.iloc[-1, 0], points.iloc[-1, 1], marker="X", s=70,
                           color=_STOP_COLOR, edgecolors="white", linewidths=0.6, zorder=4)
    for ax, column in zip(panels, (metric, "train_loss"), strict=True):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(column)
        ax.grid(alpha=0.3)
        _maybe_log_y(ax, all_values[column])
    panels[0].set_title(f"{metric} (validation) per trial")
    panels[1].set_title("train_loss per trial (mean since previous report)")
    if baseline is not None and math.isfinite(baseline):
        panels[0].axhline(baseline, color="gray", linestyle="--", linewidth=1)
    handles, _ = panels[0].get_legend_handles_labels()
    if not with_legend:
        handles = [Line2D([], [], color=_BEST_COLOR, linewidth=2.6, label="best trial")]
    handles.append(Line2D([], [], marker="X", color=_STOP_COLOR, linestyle="",
                          markersize=8, label="stopped by the scheduler"))
    if baseline is not None:
        handles.append(Line2D([], [], color="gray", linestyle="--", label="untrained model"))
    fig.legend(handles=handles, fontsize=7, loc="outside right upper")
    return to_png_base64(fig)


def _axis_positions(values: pd.Series, log: bool) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Each value's height on a [0, 1] axis, and (height, label) ticks for that axis."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric:
        labels = values.map(lambda v: v if isinstance(v, str) else json.dumps(v, default=str))
        categories = sorted(labels.unique())
        spread = max(len(categories) - 1, 1)
        heights = labels.map({c: i / spread for i, c in enumerate(categories)}).to_numpy(float)
        if len(categories) == 1:
            return np.full(len(values), 0.5), [(0.5, categories[0])]
        return heights, [(i / spread, c) for i, c in enumerate(categories)]
    raw = values.to_numpy(float)
    use_log = log and bool((raw > 0).all())
    scaled = np.log10(raw) if use_log else raw
    low, high = float(np.nanmin(scaled)), float(np.nanmax(scaled))
    if high - low < 1e-12:
        return np.full(len(values), 0.5), [(0.5, f"{raw[0]:.3g}")]
    ticks = [(0.0, f"{np.nanmin(raw):.3g}"), (1.0, f"{np.nanmax(raw):.3g}")]
    return (scaled - low) / (high - low), ticks


def parallel_coordinates(
    trials: pd.DataFrame, params: Sequence[str], metric_column: str, mode: str,
    log_params: set[str],
) -> str:
    """One polyline per trial across the searched hyperparameters and its best metric value,
    colored by that value (brighter is better)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    data = trials[trials[metric_column].map(lambda v: v is not None and math.isfinite(v))]
    axes_names = [*params, metric_column]
    fig = _figure(11, 4.2)
    ax = fig.subplots()
    positions = {}
    for i, name in enumerate(axes_names):
        heights, ticks = _axis_positions(data[name], log=name in log_params)
        positions[name] = heights
        ax.axvline(i, color="#444444", linewidth=1)
        for height, label in ticks:
            ax.text(i + 0.03, height, label, fontsize=8, va="center",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})
    values = data[metric_column].to_numpy(float)
    norm = Normalize(vmin=values.min(), vmax=values.max())
    cmap = _colormap("viridis_r" if mode == "min" else "viridis")
    order = np.argsort(values if mode == "max" else -values)  # best drawn last, on top
    for row in order:
        ys = [positions[name][row] for name in axes_names]
        ax.plot(range(len(axes_names)), ys, color=cmap(norm(values[row])), linewidth=1.6,
                alpha=0.85, marker="o", markersize=3)
    ax.set_xticks(range(len(axes_names)),
                  [f"{n}{' (log)' if n in log_params else ''}" for n in axes_names])
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes_names) - 0.6)
    ax.set_ylim(-0.08, 1.08)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    scalar = ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(scalar, ax=ax, label=metric_column, fraction=0.03)
    ax.set_title(f"Hyperparameters vs {metric_column} ({len(data)} trials)")
    return to_png_base64(fig)


def importance_bars(importances: Mapping[str, float], method: str) -> str:
    names = list(importances)[::-1]
    fig = _figure(7, max(1.6, 0.5 * len(names) + 1.0))
    ax = fig.subplots()
    bars = ax.barh(names, [importances[n] for n in names], color="#1f77b4")
    ax.bar_label(bars, labels=[f"{importances[n]:.0%}" for n in names], padding=3, fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"share of the metric's variance explained ({method})")
    ax.grid(axis="x", alpha=0.3)
    return to_png_base64(fig)


def compute_bars(trials: pd.DataFrame) -> str:
    """Per trial: optimizer steps run, and the steps early stopping saved (hatched)."""
    rows = trials.sort_values("trial_id")
    names = rows["trial_id"].astype(str).tolist()[::-1]
    run = rows["last_step"].fillna(0).astype(float).tolist()[::-1]
    total = rows["total_steps"].fillna(0).astype(float).tolist()[::-1]
    stopped = rows["stopped_early"].astype(bool).tolist()[::-1]
    saved = [max(t - r, 0.0) if s else 0.0 for r, t, s in zip(run, total, stopped, strict=True)]
    fig = _figure(9, min(12.0, max(2.0, 0.32 * len(names) + 1.2)))
    ax = fig.subplots()
    ax.barh(names, run, color="#1f77b4", label="steps run")
    ax.barh(names, saved, left=run, color="white", edgecolor=_STOP_COLOR, hatch="///",
            label="steps saved by early stopping")
    ax.set_xlabel("optimizer steps")
    ax.tick_params(axis="y", labelsize=7)
    fig.legend(fontsize=8, loc="outside upper center", ncols=2)
    ax.grid(axis="x", alpha=0.3)
    return to_png_base64(fig)
