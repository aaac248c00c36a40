"""The stall watchdog: a sweep that can make no progress stops, saved, instead of hanging.

A sweep is stalled when no trial is running, unfinished trials remain, none of them can start,
and this lasts `stall_timeout_s` seconds. A trial that has never run and fits the cluster's
alive nodes can start (Tune starts pending trials as resources free up; its actor may take a
while to come up). A trial that ran before and now waits (paused, or pending again), or one
that no alive node can hold, cannot start by itself. Ray Tune would wait forever in that
state (synchronous PBT has had such deadlocks: Ray issues #23424, #12122, PR #28511). The
watchdog then names the stuck trials and interrupts Tune the way Ctrl-C does (SIGUSR1 in the
driver), so Tune writes its final experiment snapshot and every unfinished trial stays
resumable; `launch()` and `resume()` then raise `SweepStalledError`.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from orchestrator.config.errors import UserError

UNFINISHED = ("PENDING", "PAUSED")


class SweepStalledError(UserError):
    """No trial could run for `stall_timeout_s` while unfinished trials remained."""


@dataclass(frozen=True)
class Stall:
    seconds: float
    stuck: list[tuple[str, str, Any]]  # (trial id, status, last step)

    def message(self, experiment: str) -> str:
        listed = ", ".join(f"{tid} {status} (step {step})" for tid, status, step in self.stuck)
        return (
            f"the sweep stalled: for {self.seconds:.0f} s no trial was running while "
            f"{len(self.stuck)} unfinished trials could not start: {listed}. Its state is "
            f"saved; resume with `sweep resume {experiment}`. If trials were waiting for nodes "
            "to join, raise stall_timeout_s (or set it to null to wait forever)"
        )


# The driver's last stall. A module global, not the callback's attribute: after a resume the
# callback is the copy Tune restored from its snapshot, which the caller never holds.
_last_stall: list[Stall] = []


def raise_if_stalled(experiment: str) -> None:
    """After `fit()`: raise `SweepStalledError` if the watchdog stopped the sweep."""
    if _last_stall:
        stall = _last_stall.pop()
        raise SweepStalledError(stall.message(experiment))


def clear() -> None:
    _last_stall.clear()


class StallWatchdog(Callback):
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.stall: Stall | None = None
        self._idle_since: float | None = None
        self._started: set[str] = set()

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.stall is not None:
            return
        # Seen running, or reported before (a trial restored by a resume); Tune's last_result
        # is never empty, so look for a result's own key.
        self._started |= {t.trial_id for t in trials if t.status == "RUNNING"
                          or "training_iteration" in (t.last_result or {})}
        running = any(t.status == "RUNNING" for t in trials)
        unfinished = [t for t in trials if t.status in UNFINISHED]
        if running or not unfinished or any(self._can_start(t) for t in unfinished):
            self._idle_since = None
            return
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
            return
        if now - self._idle_since < self.timeout_s:
            return
        self.stall = Stall(now - self._idle_since, [
            (t.trial_id, t.status, (t.last_result or {}).get("step")) for t in unfinished])
        _last_stall[:] = [self.stall]
        _interrupt_tune()


    def _can_start(self, trial: Any) -> bool:
        return trial.trial_id not in self._started and _fits_cluster(trial)


def _fits_cluster(trial: Any) -> bool:
    """Do the alive nodes together have what the trial asks for (not counting what others
    hold now)? A trial that no alive node can ever hold stays pending forever."""
    import ray

    total = ray.cluster_resources()
    wanted = trial.placement_group_factory.required_resources
    return all(total.get(kind, 0.0) >= amount for kind, amount in wanted.items())


def _interrupt_tune() -> None:
    """Stop Tune's loop as Ctrl-C does, so it saves its experiment state on the way out."""
    handler = signal.getsignal(signal.SIGUSR1)
    if callable(handler):  # Tune's own handler (installed when it runs in the main thread)
        os.kill(os.getpid(), signal.SIGUSR1)
        return
    raise SweepStalledError("the sweep stalled (no trial could run); Tune is not running in "
                            "the main thread, so it could not be stopped cleanly")
