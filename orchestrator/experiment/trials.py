"""The trials of an experiment that have a checkpoint, ranked best first."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config.schema import SweepConfig
from orchestrator.experiment.errors import CheckpointNotFoundError, TrialNotFoundError
from orchestrator.experiment.storage import Storage, open_storage

if TYPE_CHECKING:
    from orchestrator.experiment.results import SweepResult


@dataclass
class TrialCheckpoint:
    """A trial's best checkpoint (by the sweep metric) and where it ranks in the sweep."""

    trial_id: str
    rank: int  # 1 = the sweep's best trial
    value: float  # the trial's best value of the sweep metric
    uri: str  # local folder or s3:// URI of the checkpoint
    trial_config: dict[str, Any] = field(default_factory=dict)  # the searched values

    def local(self, scratch_dir: str) -> Path:
        """The checkpoint on local disk, checked complete; object storage is downloaded into
        `scratch_dir`."""
        from orchestrator.experiment.checkpoints import require_complete

        storage = open_storage(self.uri)
        if storage.is_local:
            folder = Path(self.uri)
        else:
            target = Path(scratch_dir) / self.trial_id
            folder = Path(storage.download(storage.root, str(target)))
        return require_complete(folder, f"{self.uri} (trial {self.trial_id})")


def as_result(result_or_path: SweepResult | str | Path) -> SweepResult:
    from orchestrator.experiment.results import SweepResult, load_results

    if isinstance(result_or_path, SweepResult):
        return result_or_path
    return load_results(result_or_path)


def require_config(result: SweepResult) -> SweepConfig:
    if result.config is None:
        raise RuntimeError(f"{result.experiment_path}: no sweep config to rebuild the model")
    return result.config


def ranked_checkpoints(result: SweepResult, top_k: int | None = None) -> list[TrialCheckpoint]:
    """The trials that have a checkpoint, best first by their best value of the sweep metric.

    `top_k` keeps the first k and must not exceed the number of such trials.
    """
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, but got top_k={top_k}")
    experiment = open_storage(result.experiment_path)
    analysis = result.experiment_analysis()
    trials = {trial.trial_id: trial for trial in analysis.trials}
    ranked: list[TrialCheckpoint] = []
    for row in result.trials.to_dict("records"):  # already sorted best first
        value = row.get(f"best_{result.metric}")
        if value is None or not math.isfinite(float(value)) or row["trial_id"] not in trials:
            continue
        trial = trials[row["trial_id"]]
        checkpoint = analysis.get_best_checkpoint(trial, metric=result.metric, mode=result.mode)
        if checkpoint is None or _missing(experiment, checkpoint.path):
            continue  # none kept, or deleted since
        ranked.append(TrialCheckpoint(
            trial_id=trial.trial_id, rank=len(ranked) + 1, value=float(value),
            uri=experiment.uri_for_path(checkpoint.path), trial_config=dict(trial.config),
        ))
    if top_k is not None and top_k > len(ranked):
        raise CheckpointNotFoundError(
            f"top_k={top_k} but only {len(ranked)} of the {len(result.trials)} trials of "
            f"{result.experiment_path} have a checkpoint with a finite {result.metric}; "
            f"use a top-k of at most {len(ranked)}"
        )
    return ranked[:top_k] if top_k is not None else ranked


def _missing(storage: Storage, fs_path: str) -> bool:
    import pyarrow.fs as pafs

    with storage.reading(fs_path):
        return storage.fs.get_file_info(fs_path).type == pafs.FileType.NotFound


def find_trial(result: SweepResult, trial_id: str | None) -> TrialCheckpoint:
    """The given trial's best checkpoint, or the sweep's best trial's when `trial_id` is None."""
    ranked = ranked_checkpoints(result)
    if not ranked:
        raise CheckpointNotFoundError(
            f"{result.experiment_path}: no trial has a checkpoint to export (none saved with a "
            f"finite {result.metric}, or deleted since)"
        )
    if trial_id is None:
        return ranked[0]
    for candidate in ranked:
        if candidate.trial_id == trial_id:
            return candidate
    raise TrialNotFoundError(
        f"trial {trial_id!r} has no checkpoint in {result.experiment_path}; trials with one: "
        f"{[c.trial_id for c in ranked]} (`sweep results EXPERIMENT` lists them)"
    )
