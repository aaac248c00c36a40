"""Persist ASHA's rung records in Tune's experiment snapshot.

Ray Tune saves the searcher's state with the experiment, but not the scheduler's: after
`Tuner.restore` ASHA starts with empty rungs, so a resumed sweep would promote trials an
uninterrupted one would have stopped. Tune does save the state of callbacks, so this callback
carries the rung records (plain trial ids and values) and writes them back on restore.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.schedulers import AsyncHyperBandScheduler


class SchedulerStateCallback(Callback):
    def __init__(self, scheduler: Any) -> None:
        # Pickled in the same Tuner snapshot as the scheduler, so after a restore this is the
        # very scheduler object the restored experiment runs with.
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any] | None:
        s = self.scheduler
        if not isinstance(s, AsyncHyperBandScheduler):
            return None
        index = {id(b): i for i, b in enumerate(s._brackets)}
        return {
            "kind": "asha",
            "rungs": [[(milestone, dict(recorded)) for milestone, recorded in b._rungs]
                      for b in s._brackets],
            "trial_bracket": {tid: index[id(b)] for tid, b in s._trial_info.items()},
            "num_stopped": s._num_stopped,
            "counter": s._counter,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        s = self.scheduler
        if state.get("kind") != "asha" or not isinstance(s, AsyncHyperBandScheduler):
            return
        for bracket, rungs in zip(s._brackets, state["rungs"], strict=True):
            bracket._rungs = [(milestone, dict(recorded)) for milestone, recorded in rungs]
        s._trial_info = {tid: s._brackets[i] for tid, i in state["trial_bracket"].items()}
        s._num_stopped = state["num_stopped"]
        s._counter = state["counter"]
