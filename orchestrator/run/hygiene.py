"""Hygiene: delete the checkpoints of trials that can no longer be among the best, and free the
Ray Train workers a stopped data-parallel trial left (`WorkerGroupReaper`, at the end).

Tune's `CheckpointConfig(num_to_keep)` counts per trial, so a 200-trial sweep keeps 200 x N
checkpoints. This callback keeps the experiment-wide top-k trials (by each trial's best value
of the sweep metric) and deletes every checkpoint of a *finished* trial outside it: trials
stopped by ASHA, diverged or infeasible trials, and finished trials that others have beaten.
Running trials keep theirs (they resume from them), and so do errored trials: `sweep resume`
continues them from their newest intact checkpoint, so the janitor never takes it away.

A deletion that fails (storage unreachable, listing or deleting raised) is not recorded: the
trial is tried again at the next trial's end and when the experiment ends, and the callback
never raises into Tune.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ray.tune import Callback

from trainables.config import best_first, is_better

log = logging.getLogger(__name__)


class CheckpointJanitor(Callback):
    def __init__(self, metric: str, mode: str, keep_top_k: int) -> None:
        self.metric, self.mode, self.keep_top_k = metric, mode, keep_top_k
        self.best: dict[str, float] = {}
        self.finished: dict[str, Any] = {}
        self.deleted: set[str] = set()

    def get_state(self) -> dict[str, Any] | None:
        return {"best": dict(self.best), "deleted": sorted(self.deleted)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best = dict(state["best"])
        self.deleted = set(state["deleted"])

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, int | float) and math.isfinite(value):
            old = self.best.get(trial.trial_id)
            if old is None or is_better(value, old, self.mode):
                self.best[trial.trial_id] = float(value)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished[trial.trial_id] = trial
        self._sweep()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._sweep()  # deletions that failed earlier (e.g. during a storage outage)

    def keepers(self) -> set[str]:
        ranked = sorted(self.best, key=lambda tid: best_first(self.best[tid], self.mode))
        return set(ranked[: self.keep_top_k])

    def _sweep(self) -> None:
        keep = self.keepers()
        for trial_id, trial in self.finished.items():
            if trial_id in keep or trial_id in self.deleted:
                continue
            if delete_checkpoints(trial.storage.storage_filesystem, trial.path):
                self.deleted.add(trial_id)
                log.info("deleted checkpoints of %s (outside the top %d)", trial_id,
                         self.keep_top_k)


def delete_checkpoints(fs: Any, trial_path: str) -> bool:
    """Delete every `checkpoint_*` folder of one trial; True only if all of them are gone."""
    from pyarrow.fs import FileSelector, FileType

    try:
        infos = fs.get_file_info(FileSelector(trial_path))
    except OSError as err:
        log.warning("cannot list %s to clean it (will retry): %s", trial_path, err)
        return False
    done = True
    for info in infos:
        if info.type == FileType.Directory and info.base_name.startswith("checkpoint_"):
            try:
                fs.delete_dir(info.path)
            except OSError as err:
                log.warning("cannot delete %s (will retry): %s", info.path, err)
                done = False
    return done


class WorkerGroupReaper(Callback):
    """Frees the Ray Train workers of a data-parallel trial that stopped running before its
    Train run ended (`trainables.data_parallel` says how that leaves their placement group
    reserved): each trial that started is checked once when it is no longer RUNNING (stopped
    early, paused, failed and waiting for its retry, or finished). Never raises into Tune."""

    def __init__(self) -> None:
        self.running: dict[str, Any] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running[trial.trial_id] = trial

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        for trial_id, trial in list(self.running.items()):
            if trial.status != "RUNNING":
                del self.running[trial_id]
                self._reap(trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial in self.running.values():
            self._reap(trial)
        self.running.clear()

    @staticmethod
    def _reap(trial: Any) -> None:
        from trainables.data_parallel import remove_leftovers

        try:
            remove_leftovers(trial.storage.storage_filesystem, trial.path)
        except Exception as err:  # a cleanup must not end the sweep
            log.warning("could not free the workers of %s: %s", trial.trial_id, err)
