"""Two gaps in Ray Tune (2.60) that lose work, each closed by an idempotent patch.

**A killed trial process ends the whole sweep.** When Ray's memory monitor kills a trial's
process to save its node (the node ran short of memory), the trial's pending actor task fails
with `ray.exceptions.OutOfMemoryError`. Tune's actor manager
(`ray/air/execution/_internal/actor_manager.py`, `RayActorManager._actor_task_failed`) handles
only `RayActorError` and `RayTaskError` there and raises `RuntimeError("Caught unexpected
exception: ...")` for anything else, out of `Tuner.fit()`: the driver dies and every running
trial with it. Seen here while building a learning-curve table (two SmolLM2 trials at ~8 GB
each and other work on a 24 GB node). A killed process is a dead actor, so
`patch_actor_manager()` hands these errors to Tune as the `RayActorError` they are: the trial
fails (its error file names the cause), Tune retries it from its checkpoint under
`failure.max_failures`, and the sweep goes on.

**New trials of a moved experiment write into the old folder.** `Tuner.restore(NEW)` re-points
the restored trials at NEW (`TuneController._restore_trials` calls `Trial.set_storage`), but
the search algorithm is restored from its pickled state (`SearchGenerator.set_state`,
`BasicVariantGenerator.set_state`), whose `Experiment` spec still holds the `StorageContext`
of the folder the sweep first ran in. Every trial the searcher creates after the resume takes
that context: its results and checkpoints go to the old folder (or fail, when it is gone), and
the next resume fails it with "Could not recover from checkpoint as it does not exist on
storage anymore". Seen here resuming a copied experiment. `patch_moved_experiment()` re-points
each trial that `TuneController.add_trial` receives at the controller's own storage, the same
three fields `_restore_trials` sets, so a copied, moved or re-mounted experiment resumes whole.
"""

from __future__ import annotations

from typing import Any

_PATCHED = "_sweep_survives_killed_actors"
_REBASED = "_sweep_trials_follow_the_experiment"


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


def _same_filesystem(a: Any, b: Any) -> bool:
    """The same pyarrow filesystem: the object, or one configured alike (an S3 one resumed
    with new credentials or another endpoint is not)."""
    if a is b:
        return True
    try:
        return bool(a.equals(b))
    except Exception:  # noqa: BLE001  (not a pyarrow filesystem: treat as another)
        return False


def rebase_trial(trial: Any, storage: Any) -> bool:
    """Point `trial` at the experiment folder and filesystem of `storage` (a Tune
    `StorageContext`) when it names another; True when it was moved. Its checkpoints' paths
    move with it."""
    import copy

    old = trial.storage
    if (old.storage_fs_path == storage.storage_fs_path
            and old.experiment_dir_name == storage.experiment_dir_name
            and _same_filesystem(old.storage_filesystem, storage.storage_filesystem)):
        return False
    new = copy.copy(old)
    new.storage_filesystem = storage.storage_filesystem
    new.storage_fs_path = storage.storage_fs_path
    new.experiment_dir_name = storage.experiment_dir_name
    trial.set_storage(new)
    return True


def patch_moved_experiment() -> None:
    """Make every trial Tune adds live in the experiment folder being run (idempotent)."""
    from ray.tune.execution.tune_controller import TuneController

    original = TuneController.add_trial
    if getattr(original, _REBASED, False):
        return

    def add_trial(self: Any, trial: Any) -> None:
        rebase_trial(trial, self._storage)
        original(self, trial)

    setattr(add_trial, _REBASED, True)
    add_trial.__wrapped__ = original  # type: ignore[attr-defined]
    TuneController.add_trial = add_trial  # type: ignore[method-assign]
