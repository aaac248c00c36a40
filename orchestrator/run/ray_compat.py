"""A gap in Ray Tune that would end a whole sweep for one trial's death.

When Ray's memory monitor kills a trial's process to save its node (the node ran short of
memory), the trial's pending actor task fails with `ray.exceptions.OutOfMemoryError`. Tune's
actor manager (Ray 2.60, `ray/air/execution/_internal/actor_manager.py`,
`RayActorManager._actor_task_failed`) handles only `RayActorError` and `RayTaskError` there and
raises `RuntimeError("Caught unexpected exception: ...")` for anything else, out of
`Tuner.fit()`: the driver dies and every running trial with it. Seen here while building a
learning-curve table (two SmolLM2 trials at ~8 GB each and other work on a 24 GB node).

A killed process is a dead actor, so `patch_actor_manager()` hands these errors to Tune as
the `RayActorError` they are: the trial fails (its error file names the cause), Tune retries
it from its checkpoint under `failure.max_failures`, and the sweep goes on.
"""

from __future__ import annotations

from typing import Any

_PATCHED = "_sweep_survives_killed_actors"


def process_gone_errors() -> tuple[type[Exception], ...]:
    """Errors of an actor task whose process is gone, that Tune does not treat as such."""
    from ray import exceptions as rex

    return (rex.OutOfMemoryError, rex.WorkerCrashedError, rex.NodeDiedError,
            rex.LocalRayletDiedError)


def as_actor_error(exception: Exception) -> Exception:
    """`exception` as a `RayActorError` when it says the actor's process is gone."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exception, (RayActorError, RayTaskError)):
        return exception
    if isinstance(exception, process_gone_errors()):
        error = RayActorError(error_msg=f"the trial's process is gone "
                                        f"({type(exception).__name__}): {exception}")
        error.__cause__ = exception
        return error
    return exception


def patch_actor_manager() -> None:
    """Make Tune treat a killed trial process as a failed trial (idempotent)."""
    from ray.air.execution._internal.actor_manager import RayActorManager

    original = RayActorManager._actor_task_failed
    if getattr(original, _PATCHED, False):
        return

    def _actor_task_failed(self: Any, tracked_actor_task: Any, exception: Exception) -> None:
        original(self, tracked_actor_task, as_actor_error(exception))

    setattr(_actor_task_failed, _PATCHED, True)
    _actor_task_failed.__wrapped__ = original  # type: ignore[attr-defined]
    RayActorManager._actor_task_failed = _actor_task_failed  # type: ignore[method-assign]
