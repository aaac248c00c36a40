"""A trial process killed by Ray's memory monitor fails that trial, not the sweep
(orchestrator/run/ray_compat.py). Ray's real `RayActorManager._actor_task_failed` is called on a
manager whose actor bookkeeping is stubbed out; no Ray is started."""

from __future__ import annotations

from typing import Any

import pytest
from ray.air.execution._internal.actor_manager import RayActorManager
from ray.air.execution._internal.tracked_actor import TrackedActor
from ray.air.execution._internal.tracked_actor_task import TrackedActorTask
from ray.exceptions import OutOfMemoryError, RayActorError, WorkerCrashedError

from orchestrator.run.ray_compat import as_actor_error, patch_actor_manager

OOM = "1 worker(s) were killed due to the node running low on memory."


def manager_and_task() -> tuple[RayActorManager, TrackedActorTask, list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []
    manager = RayActorManager.__new__(RayActorManager)
    manager._failed_actor_ids = set()
    manager._cleanup_actor = lambda tracked_actor: seen.append(("cleanup", tracked_actor))
    actor = TrackedActor(7, on_error=lambda a, e: seen.append(("actor_error", e)))
    task = TrackedActorTask(actor, on_error=lambda a, e: seen.append(("task_error", e)))
    return manager, task, seen


def unpatched() -> Any:
    method = RayActorManager._actor_task_failed
    return getattr(method, "__wrapped__", method)


def test_ray_tune_alone_ends_the_sweep_on_a_memory_kill() -> None:
    """The gap the patch closes (Ray 2.60): this fails once Ray handles it, and then the patch
    can go."""
    manager, task, _ = manager_and_task()
    with pytest.raises(RuntimeError, match="Caught unexpected exception"):
        unpatched()(manager, task, OutOfMemoryError(OOM))


def test_a_memory_kill_is_a_failed_trial_once_patched() -> None:
    patch_actor_manager()
    patch_actor_manager()  # idempotent: wrapping twice would still work, but is not done
    assert unpatched() is not RayActorManager._actor_task_failed
    assert getattr(unpatched(), "__wrapped__", None) is None
    manager, task, seen = manager_and_task()
    manager._actor_task_failed(task, OutOfMemoryError(OOM))
    kinds = [k for k, _ in seen]
    assert kinds == ["cleanup", "actor_error", "task_error"]
    error = seen[1][1]
    assert isinstance(error, RayActorError) and OOM in str(error)
    assert isinstance(error.__cause__, OutOfMemoryError)
    assert 7 in manager._failed_actor_ids


def test_only_errors_that_mean_the_process_is_gone_are_converted() -> None:
    crashed = as_actor_error(WorkerCrashedError())
    assert isinstance(crashed, RayActorError)
    actor_error = RayActorError()
    assert as_actor_error(actor_error) is actor_error
    bug = ValueError("a bug in Tune")
    assert as_actor_error(bug) is bug  # anything else still ends the sweep with its traceback


# --- a moved experiment: trials follow the controller's folder --------------------------------

def _trial_in(storage):  # a Tune trial object only: no Ray is started
    import copy

    from ray.tune.experiment import Trial

    return Trial("__fake", config={}, storage=copy.deepcopy(storage), stub=True)


def test_a_trial_naming_the_old_folder_is_moved_into_the_new_one(tmp_path) -> None:
    import copy

    import pyarrow.fs
    from ray.train._internal.storage import StorageContext

    from orchestrator.run.ray_compat import rebase_trial

    old = StorageContext(storage_path=str(tmp_path / "first"), experiment_dir_name="exp")
    new = StorageContext(storage_path=str(tmp_path / "moved"), experiment_dir_name="exp")
    stale = _trial_in(old)
    assert rebase_trial(stale, new) is True
    assert stale.storage.experiment_fs_path == str(tmp_path / "moved" / "exp")
    assert rebase_trial(stale, new) is False  # once there, left alone
    assert old.experiment_fs_path == str(tmp_path / "first" / "exp")  # not mutated
    assert rebase_trial(_trial_in(new), new) is False  # a fresh run's trial: a no-op
    # same folder, another filesystem (an S3 store resumed with new credentials): rebased.
    # (Set as Tune's own restore sets them: a new context would probe the bucket.)
    def on_s3(secret: str) -> StorageContext:
        context = copy.copy(old)
        context.storage_fs_path = "bucket/sweeps"
        context.storage_filesystem = pyarrow.fs.S3FileSystem(
            access_key="a", secret_key=secret, endpoint_override="http://x:1")
        return context

    s3, rotated = on_s3("old"), on_s3("new")
    trial = _trial_in(s3)
    assert rebase_trial(trial, s3) is False
    assert rebase_trial(trial, rotated) is True
    assert trial.storage.storage_filesystem is rotated.storage_filesystem
