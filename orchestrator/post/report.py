"""`sweep report EXPERIMENT`: one self-contained HTML page about a finished sweep.

Learning curves (marking where the scheduler stopped each trial), hyperparameters vs the metric
(parallel coordinates), hyperparameter importance (fANOVA, through optuna), the best trials,
the compute early stopping saved, and the quality checks (fit flags, data leakage, forgetting).
Figures are embedded as base64 PNG, so the one file can be mailed or attached as it is.

>>> from orchestrator.post.report import write_report
>>> write_report("~/sweep_results/quickstart-20261121-120500")  # doctest: +SKIP
PosixPath('/root/sweep_results/quickstart-20261121-120500/report.html')
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.config.schema import LogUniform
from orchestrator.experiment.fit import (
    LOSS_MIN_CHANGE,
    NOISE_Z,
    OVERFIT_TOLERANCE,
    RATE_MIN_CHANGE,
    UNDERFIT_IMPROVEMENT,
    add_fit_flags,
)
from orchestrator.experiment.layout import FORGETTING_FILE, LEAKAGE_FILE
from orchestrator.experiment.results import SweepResult, load_results
from orchestrator.experiment.storage import open_storage
from orchestrator.post import report_plots as plots
from orchestrator.post.forgetting import FORGETTING_TOLERANCE, forgetting_check

REPORT_FILE = "report.html"
_CSS = """body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;margin:2em auto;
max-width:1150px;color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;
border-bottom:1px solid #ddd;padding-bottom:.2em}table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f4f4f4}
img{max-width:100%;height:auto}
.note{color:#555;font-size:.9em}.warn{color:#a40000}code{background:#f4f4f4;padding:0 3px}"""


@dataclass
class ComputeSummary:
    trials: int
    stopped_early: int
    steps_run: int  # optimizer steps every trial actually ran
    steps_saved: int  # steps the stopped trials would still have run to their total_steps

    @property
    def fraction_saved(self) -> float:
        return self.steps_saved / max(self.steps_run + self.steps_saved, 1)


def compute_summary(trials: pd.DataFrame) -> ComputeSummary:
    run = trials["last_step"].fillna(0).astype(float)
    remaining = (trials["total_steps"].fillna(0).astype(float) - run).clip(lower=0)
    stopped = trials["stopped_early"].astype(bool)
    return ComputeSummary(len(trials), int(stopped.sum()), int(run.sum()),
                          int(remaining[stopped].sum()))


def load_histories(experiment_path: str | Path) -> dict[str, pd.DataFrame]:
    """trial_id -> every report of that trial (a local folder or an s3:// URI)."""
    return load_results(str(experiment_path)).histories


def searched_params(result: SweepResult) -> tuple[list[str], set[str]]:
    """The trial-table columns of the searched hyperparameters, and those searched log-scale."""
    if result.config is not None:
        space = result.config.search_space
        params = [k for k in space if k in result.trials.columns]
        return params, {k for k in params if isinstance(space[k], LogUniform)}
    params = [c for c in result.trials.columns if "." in c
              and result.trials[c].astype(str).nunique() > 1]
    return params, set()


# --- HTML -------------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _step(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _img(png_b64: str, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{png_b64}">'


def _kv(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _table(df: pd.DataFrame) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return df.to_html(index=False, escape=True, na_rep="", border=0,
                      formatters={c: fmt for c in df.columns})


def _summary(result: SweepResult, compute: ComputeSummary) -> str:
    rows: list[tuple[str, Any]] = [
        ("experiment", result.experiment_path),
        ("metric", f"{result.metric} ({result.mode})"),
        ("trials", f"{compute.trials} ({compute.stopped_early} stopped early by the scheduler)"),
        ("best trial", f"{result.best_trial_id}: {result.metric}={result.best_value:.4g} "
                       f"(step {_step(result.best_metrics.get('step'))})"),
    ]
    if result.baseline_value is not None:
        rows.append(("untrained model", f"{result.metric}={result.baseline_value:.4g}"))
    rows += [("best config", json.dumps(result.best_config)),
             ("best checkpoint", result.best_checkpoint),
             ("generated", time.strftime("%Y-%m-%d %H:%M:%S"))]
    return _kv(rows)


def _compute_section(compute: ComputeSummary, trials: pd.DataFrame) -> str:
    kv = _kv([("optimizer steps run (all trials)", compute.steps_run),
              ("steps saved by early stopping", f"{compute.steps_saved} "
               f"({compute.fraction_saved:.0%} of what running every trial to its budget "
               "would have cost)"),
              ("trials stopped early", f"{compute.stopped_early} of {compute.trials}")])
    return kv + _img(plots.compute_bars(trials), "optimizer steps per trial")


def _quality_section(trials: pd.DataFrame, leakage: dict | None,
                     forgetting: dict | None) -> str:
    flagged = trials[trials["overfitting"] | trials["underfitting"]]
    parts = ['<p class="note">Overfitting: the best value of the sweep metric came before the '
             "last evaluation, the last is worse than it by more than the noise floor, and "
             "train_loss kept falling. Underfitting: a trial that ran its whole budget whose "
             "metric was still improving, by more than the noise floor over the last third of "
             f"its evaluations. The noise floor is the largest of {OVERFIT_TOLERANCE:.0%} "
             f"({UNDERFIT_IMPROVEMENT:.0%} for underfitting) of the value, {LOSS_MIN_CHANGE} "
             f"nats of loss or {RATE_MIN_CHANGE} of accuracy/F1, and {NOISE_Z:g} standard errors "
             "of the difference of two evaluations.</p>"]
    if flagged.empty:
        parts.append("<p>No trial is flagged as overfitting or underfitting.</p>")
    else:
        parts.append(_table(flagged[["trial_id", "overfitting", "underfitting", "fit_note"]]))
    if leakage is not None:
        parts.append("<h3>Data leakage (checked before the sweep)</h3>")
        for split in leakage["splits"]:
            share = f"{split['leaked']} of {split['size']} {split['split']} texts also occur in "
            parts.append(f'<p class="warn">{_esc(share)}train.</p>' if split["leaked"] else
                         f"<p>No {_esc(split['split'])} text occurs in train.</p>")
        rows = [{"split": s["split"], "texts": s["size"], "leaked": s["leaked"],
                 "exact": s["exact"], "normalized": s["normalized"], "near": s["near"]}
                for s in leakage["splits"]]
        parts.append(_table(pd.DataFrame(rows)))
        examples = [{"split": s["split"], **e} for s in leakage["splits"] for e in s["examples"]]
        if examples:
            parts.append(_table(pd.DataFrame(examples)))
    if forgetting is not None:
        parts.append("<h3>Forgetting (general English text)</h3>")
        if forgetting.get("skipped"):
            parts.append(f"<p>Skipped: {_esc(forgetting['skipped'])}</p>")
        else:
            relative = forgetting["delta"] / forgetting["base_loss"]
            verdict = ("worse on general text: some forgetting" if relative > FORGETTING_TOLERANCE
                       else "better on general text" if relative < -FORGETTING_TOLERANCE
                       else "about the same: no sign of forgetting")
            parts.append(_kv([("base model loss", f"{forgetting['base_loss']:.4f}"),
                              ("best model loss", f"{forgetting['tuned_loss']:.4f}"),
                              ("delta", f"{forgetting['delta']:+.4f} ({relative:+.1%}): "
                                        f"{verdict}")]))
    return "".join(parts)


def build_report(result: SweepResult, histories: dict[str, pd.DataFrame], *,
                 leakage: dict | None = None, forgetting: dict | None = None,
                 top: int = 10) -> str:
    """The report as one HTML string."""
    trials = result.trials
    if "overfitting" not in trials:  # load_results adds them once integrated
        trials = add_fit_flags(trials, histories, metric=result.metric, mode=result.mode)
    metric_column = f"best_{result.metric}"
    params, log_params = searched_params(result)
    compute = compute_summary(trials)
    title = f"Sweep report: {Path(result.experiment_path.split('?')[0]).name}"
    body = [f"<h1>{_esc(title)}</h1>", _summary(result, compute), "<h2>Learning curves</h2>",
            _img(plots.learning_curves(histories, trials, result.metric, result.best_trial_id,
                                       result.baseline_value), "learning curves")]
    body.append("<h2>Compute: spent and saved by early stopping</h2>")
    body.append(_compute_section(compute, trials))
    body.append(f"<h2>Hyperparameters vs {_esc(result.metric)}</h2>")
    if params:
        body.append(_img(plots.parallel_coordinates(trials, params, metric_column, result.mode,
                                                    log_params), "parallel coordinates"))
    else:
        body.append('<p class="note">Nothing was searched: no hyperparameters to compare.</p>')
    importance = plots.param_importances(trials, params, metric_column, result.mode,
                                         log_params)
    body.append(f"<h2>Hyperparameter importance ({_esc(importance.method)})</h2>")
    if importance.values:
        body.append(_img(plots.importance_bars(importance.values, importance.method),
                         "hyperparameter importance"))
    if importance.note:
        body.append(f'<p class="note">{_esc(importance.note)}</p>')
    body.append(f"<h2>Best trials (top {min(top, len(trials))} of {len(trials)})</h2>")
    shown = ["trial_id", "status", *params, metric_column, f"last_{result.metric}", "last_step",
             "total_steps", "stopped_early", "overfitting", "underfitting", "peak_rss_mb",
             "peak_cuda_mb"]
    body.append(_table(trials[[c for c in shown if c in trials]].head(top)))
    body.append("<h2>Quality checks</h2>")
    body.append(_quality_section(trials, leakage, forgetting))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>'
            f"{_esc(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(experiment_path: str | Path, out: str | Path | None = None, *, top: int = 10,
                 forgetting: bool = False, general_text: str | Path | None = None) -> Path:
    """Read the experiment, write the HTML report, return its path.

    `out` defaults to report.html in a local experiment folder (the current folder for s3://).
    `forgetting=True` also runs `forgetting_check` on the best checkpoint (loads the base and
    the tuned model) and keeps its result in the experiment as forgetting.json.
    """
    result = load_results(str(experiment_path))
    histories = result.histories  # the same reading of the experiment, not a second one
    experiment = open_storage(str(experiment_path))
    leakage = (json.loads(experiment.read_text(LEAKAGE_FILE))
               if experiment.exists(LEAKAGE_FILE) else None)
    forgetting_result = None
    if forgetting:
        assert result.config is not None  # load_results refuses experiments without one
        texts = None if general_text is None else [
            t for t in Path(general_text).read_text(encoding="utf-8").splitlines() if t.strip()]
        forgetting_result = forgetting_check(result.config, result.local_checkpoint(), texts)
        experiment.write_text(json.dumps(forgetting_result, indent=2), FORGETTING_FILE)
    elif experiment.exists(FORGETTING_FILE):
        forgetting_result = json.loads(experiment.read_text(FORGETTING_FILE))
    page = build_report(result, histories, leakage=leakage, forgetting=forgetting_result,
                        top=top)
    if out is None:
        name = Path(experiment.root).name
        out = Path(experiment.root) / REPORT_FILE if experiment.is_local else Path(
            f"{name}-{REPORT_FILE}")
    target = Path(out).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target.resolve()
