"""What a sweep leaves behind, read back from the experiment folder.

The same code serves `launch()`'s return value and `sweep results EXPERIMENT`, so a result read
days later equals the one the sweep printed.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from orchestrator.config.loading import validate_dict
from orchestrator.config.schema import SweepConfig
from orchestrator.experiment.errors import (
    CheckpointNotFoundError,
    CorruptExperimentStateError,
    ExperimentNotFoundError,
    NoTrialResultsError,
)
from orchestrator.experiment.fit import add_fit_flags
from orchestrator.experiment.layout import BASELINE_FILE, SWEEP_CONFIG_FILE, TUNE_STATE_PREFIX
from orchestrator.experiment.storage import Storage, open_storage
from trainables.config import best_first, is_better

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    experiment_path: str
    metric: str
    mode: str
    best_trial_id: str
    best_config: dict[str, Any]
    best_metrics: dict[str, Any]
    best_checkpoint: str | None
    trials: pd.DataFrame
    baseline: dict[str, float] = field(default_factory=dict)
    config: SweepConfig | None = None
    # Tune's reading of the experiment, made once by `load_results` and reused by every
    # post-sweep step of the same command (ranking checkpoints, histories for the report).
    analysis: Any = field(default=None, repr=False, compare=False)

    def experiment_analysis(self) -> Any:
        if self.analysis is None:
            self.analysis = read_analysis(open_storage(self.experiment_path), self.metric,
                                          self.mode)
        return self.analysis

    @property
    def histories(self) -> dict[str, pd.DataFrame]:
        """trial_id -> every report of that trial."""
        return dict(self.experiment_analysis().trial_dataframes)

    @property
    def best_value(self) -> float:
        return float(self.best_metrics[self.metric])

    @property
    def baseline_value(self) -> float | None:
        value = self.baseline.get(self.metric)
        return None if value is None else float(value)

    def local_checkpoint(self, local_dir: str | None = None) -> Path:
        """The best checkpoint on local disk (downloaded first from object storage)."""
        if self.best_checkpoint is None:
            raise CheckpointNotFoundError(
                f"{self.experiment_path}: the best trial {self.best_trial_id} has no "
                "checkpoint to load (none saved, or deleted since)")
        from orchestrator.experiment.checkpoints import require_complete

        storage = open_storage(self.best_checkpoint)
        if storage.is_local:
            folder = Path(self.best_checkpoint)
        else:
            target = local_dir or tempfile.mkdtemp(prefix="sweep-best-")
            folder = Path(storage.download(storage.root, target))
        return require_complete(folder, f"{self.best_checkpoint} (trial {self.best_trial_id})")

    def load_best_model(self, device: str = "cpu") -> tuple[Any, Any]:
        """(model, tokenizer) of the best checkpoint: base model + adapter, ready for inference."""
        from orchestrator.experiment.checkpoints import load_checkpoint_model

        if self.config is None:
            raise RuntimeError(f"{self.experiment_path}: no sweep config to rebuild the model")
        return load_checkpoint_model(self.config, self.local_checkpoint(), device=device)

    def summary(self) -> str:
        lines = [
            f"Experiment:      {self.experiment_path}",
            f"Trials:          {len(self.trials)} "
            f"({int(self.trials['stopped_early'].sum())} stopped early by the scheduler)",
            f"Best trial:      {self.best_trial_id}  {self.metric}={self.best_value:.4f} "
            f"(step {self.best_metrics.get('step')})",
        ]
        if self.baseline_value is not None:
            lines.append(f"Untrained model: {self.metric}={self.baseline_value:.4f}")
        lines.append(f"Best config:     {json.dumps(self.best_config)}")
        lines.append(f"Best checkpoint: {self.best_checkpoint}")
        return "\n".join(lines)


def _flatten_config(config: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{k}": v for section, values in config.items()
            if isinstance(values, dict) for k, v in values.items()}


def _checkpoint_reports(trial: Any, metric: str) -> list[tuple[float, dict[str, Any]]]:
    """The reports saved with the trial's kept checkpoints. After a retry Tune restores the
    trial's result.json from its last upload, which can miss the report made with the newest
    checkpoint; the checkpoint manager still has it."""
    manager = getattr(trial.run_metadata, "checkpoint_manager", None)
    out = []
    for kept in getattr(manager, "best_checkpoint_results", None) or []:
        value = kept.metrics.get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            out.append((float(value), dict(kept.metrics)))
    return out


def _peak_memory(history: pd.DataFrame) -> dict[str, float]:
    """A trial's peak memory over its reports (`trainables.runtime.PeakMemory`: RSS, and CUDA
    on GPU, in MiB); over all reports, since a retried trial's new process counts afresh."""
    return {key: float(history[key].max()) for key in ("peak_rss_mb", "peak_cuda_mb")
            if key in history and history[key].notna().any()}


def read_sweep_config(experiment: Storage) -> SweepConfig | None:
    """The experiment's saved config, validated as stored (`validate_dict(stored=True)`): rules
    added since the sweep ran do not lock its results away."""
    if not experiment.exists(SWEEP_CONFIG_FILE):
        return None
    return validate_dict(yaml.safe_load(experiment.read_text(SWEEP_CONFIG_FILE)),
                         experiment.uri_of(SWEEP_CONFIG_FILE), stored=True)


def tune_state_files(experiment: Storage) -> list[str]:
    """The names of Tune's experiment-state snapshots in the folder, oldest first."""
    from pyarrow.fs import FileSelector

    with experiment.reading():
        infos = experiment.fs.get_file_info(FileSelector(experiment.root))
    names = [i.base_name for i in infos if i.base_name.startswith(TUNE_STATE_PREFIX)
             and i.base_name.endswith(".json")]
    return sorted(names)  # session timestamps sort chronologically


def is_readable_state(experiment: Storage, name: str) -> bool:
    """Whether the experiment-state snapshot `name` parses as one: a sweep killed while Tune
    wrote it, or a folder copied in part, leaves one that does not. (A store that does not
    answer is an error, not an unreadable file.)"""
    try:
        state = json.loads(experiment.read_text(name))
    except ValueError:  # not JSON, or not text
        return False
    return isinstance(state, dict) and "trial_data" in state


def newest_readable_state(experiment: Storage) -> str:
    """The newest experiment-state snapshot that parses; newer ones that do not are passed
    over with a warning, and left where they are (`sweep resume` sets them aside)."""
    names = tune_state_files(experiment)
    unreadable = []
    while names and not is_readable_state(experiment, names[-1]):
        unreadable.append(names.pop())
    if not names:
        raise CorruptExperimentStateError(
            f"{experiment.uri}: no experiment state can be read ({', '.join(unreadable)} "
            "cut off or not Tune's), so there is no list of trials; restore "
            f"{TUNE_STATE_PREFIX}*.json from a backup or the place the sweep wrote to")
    if unreadable:
        log.warning("%s: experiment state %s is unreadable (cut off mid-write?); reading the "
                    "previous one, %s (`sweep resume` sets the unreadable one aside)",
                    experiment.uri, ", ".join(unreadable), names[-1])
    return names[-1]


def read_analysis(experiment: Storage, metric: str, mode: str) -> Any:
    from ray.tune import ExperimentAnalysis

    state = experiment.path(newest_readable_state(experiment))
    with experiment.reading():
        return ExperimentAnalysis(
            state, storage_filesystem=None if experiment.is_local else experiment.fs,
            default_metric=metric, default_mode=mode,
        )


def load_results(experiment_path: str | Path) -> SweepResult:
    """Read a finished (or interrupted) experiment: a local folder or an s3:// URI."""
    experiment = open_storage(str(experiment_path))
    if not experiment.exists():
        raise ExperimentNotFoundError(
            f"{experiment.uri}: no such folder; give the experiment folder (or s3:// URI) "
            "that `sweep run` printed after `Experiment:`"
        )
    config = read_sweep_config(experiment)
    if config is None:
        raise ExperimentNotFoundError(
            f"{experiment.uri}: no {SWEEP_CONFIG_FILE}; is this a folder made by `sweep run`?"
        )
    if not tune_state_files(experiment):
        raise NoTrialResultsError(
            f"{experiment.uri}: no {TUNE_STATE_PREFIX}*.json, so no trial to read: the sweep "
            "has not saved its first state yet (wait a minute), or it stopped before it started "
            "a trial (run it again under a new `name`)"
        )
    metric, mode = config.metric, config.resolved_mode
    analysis = read_analysis(experiment, metric, mode)
    rows, best = [], None
    for trial in analysis.trials:
        history = analysis.trial_dataframes.get(trial.trial_id, pd.DataFrame())
        values = history[metric].dropna() if metric in history else pd.Series(dtype=float)
        values = values[values.map(lambda v: math.isfinite(v))]
        last = trial.last_result or {}
        row: dict[str, Any] = {
            "trial_id": trial.trial_id,
            "status": trial.status,
            **_flatten_config(trial.config),
            "reports": len(history),
            "last_step": last.get("step"),
            "total_steps": last.get("total_steps"),
            f"best_{metric}": None,
            f"last_{metric}": last.get(metric),
            "diverged": bool(last.get("diverged", False)),
            "infeasible": bool(last.get("infeasible", False)),
            **_peak_memory(history),
            "node_ip": last.get("node_ip"),
            "node_id": last.get("node_id"),
        }
        reports = [(float(values[i]), history.loc[i].to_dict()) for i in values.index]
        reports += _checkpoint_reports(trial, metric)
        if reports:
            value, report = min(reports, key=lambda vr: best_first(vr[0], mode))
            row[f"best_{metric}"] = value
            if best is None or is_better(value, best[0], mode):
                best = (value, trial, report)
        rows.append(row)
    trials = pd.DataFrame(rows)
    if best is None:
        raise NoTrialResultsError(
            f"{experiment.uri}: no trial reported {metric!r} yet; wait for the first "
            "evaluation, or see why the trials failed (error.txt in each trial's folder)"
        )
    _, best_trial, best_row = best
    # Ended by the scheduler: terminated cleanly before its own step budget ran out.
    trials["stopped_early"] = (
        (trials["status"] == "TERMINATED")
        & (trials["last_step"] < trials["total_steps"])
        & ~trials["diverged"]
        & ~trials["infeasible"]
    )
    trials = add_fit_flags(trials, analysis.trial_dataframes, metric=metric, mode=mode)
    checkpoint = analysis.get_best_checkpoint(best_trial, metric=metric, mode=mode)
    baseline = (json.loads(experiment.read_text(BASELINE_FILE))
                if experiment.exists(BASELINE_FILE) else {})
    return SweepResult(
        experiment_path=experiment.uri,
        metric=metric,
        mode=mode,
        best_trial_id=best_trial.trial_id,
        best_config=best_trial.config,
        best_metrics={k: v for k, v in best_row.items() if not k.startswith("config/")},
        best_checkpoint=experiment.uri_for_path(checkpoint.path) if checkpoint else None,
        trials=trials.sort_values(f"best_{metric}", ascending=(mode == "min")),
        baseline=baseline,
        config=config,
        analysis=analysis,
    )
