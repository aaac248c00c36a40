"""A Tune callback that timestamps each trial as the driver sees it (wall clock, `time.time()`).

created:   the driver first sees the trial (the searcher produced it; its actor is requested)
started:   its actor is up (Tune's `on_trial_start`)
completed: the driver has processed its end (`on_trial_complete` / `on_trial_error`)

Trials add their own in-process stamps (function entry/exit) through their results or a file;
the differences between the two say where time goes. `failures` counts trial processes that
died or raised (each retry restarts the trial): a run with failures is not a clean measurement
(on a shared machine, another job killing Ray workers shows up here).
"""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback


class Timeline(Callback):
    def __init__(self) -> None:
        self.trials: dict[str, dict[str, float]] = {}
        self.failures: dict[str, int] = {}

    def _stamp(self, trial: Any, event: str) -> None:
        self.trials.setdefault(trial.trial_id, {}).setdefault(event, time.time())

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials:
            if trial.trial_id not in self.trials:
                self._stamp(trial, "created")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stamp(trial, "created")
        self._stamp(trial, "started")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stamp(trial, "completed")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failures[trial.trial_id] = self.failures.get(trial.trial_id, 0) + 1

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.failures[trial.trial_id] = self.failures.get(trial.trial_id, 0) + 1
        self._stamp(trial, "completed")
