"""Resume an interrupted sweep: `sweep resume EXPERIMENT` / `resume(experiment)`.

Finished trials are kept as they are, running and errored trials continue from their latest
good checkpoint, the searcher keeps its history and ASHA its rung records. A corrupt newest
experiment state is set aside and the previous good one used; with no good state the resume
stops with an error instead of silently starting the experiment over (which Tune would do).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from orchestrator.config.errors import ConfigError, UserError
from orchestrator.experiment.results import (
    SweepResult,
    is_readable_state,
    load_results,
    read_sweep_config,
    tune_state_files,
)
from orchestrator.experiment.storage import Storage, open_storage

if TYPE_CHECKING:
    from orchestrator.config.schema import SweepConfig
    from orchestrator.run.ray_log import RayLog

log = logging.getLogger(__name__)


class ResumeError(UserError, RuntimeError):
    """The experiment cannot be resumed; the message says why and what to do."""


def repair_experiment_state(storage: Storage) -> list[str]:
    """Set aside unreadable experiment-state files, newest first, until a good one is newest.

    Returns the names set aside. Raises ResumeError if no readable state remains.
    """
    moved = []
    names = tune_state_files(storage)
    while names and not is_readable_state(storage, names[-1]):
        bad = names.pop()
        aside = storage.path("corrupt", f"{bad}.{int(time.time())}")
        storage.fs.create_dir(storage.path("corrupt"), recursive=True)
        storage.fs.move(storage.path(bad), aside)
        log.warning("experiment state %s is unreadable; set aside as %s", bad, aside)
        moved.append(bad)
    if not names:
        raise ResumeError(
            f"{storage.uri}: no readable experiment state (set aside: {moved or 'none found'}); "
            "the experiment cannot be resumed without re-running every trial. Start a new "
            "sweep, or restore experiment_state-*.json from a backup"
        )
    return moved


def resume(experiment: str, *, address: str | None = None, restart_errored: bool = False,
           verbose: bool = False) -> SweepResult:
    """Continue the sweep stored at `experiment` (a folder or s3:// URI) and return results.

    Ray's output is appended to `EXPERIMENT/logs/ray.log`; `verbose=True` leaves it on the
    console (see `orchestrator.run.ray_log`).
    """
    from orchestrator.run.ray_log import RayLog

    storage = open_storage(experiment)
    config = read_sweep_config(storage)
    if config is None:
        raise ResumeError(f"{storage.uri}: no sweep_config.yaml; is this made by `sweep run`?")
    with RayLog(verbose, title=f"sweep resume {storage.uri}") as ray_log:
        ray_log.attach(storage.uri)  # the experiment's own: its sweep_config.yaml is there
        result = _resume(storage, config, address, restart_errored, ray_log)
    print(result.summary(), flush=True)
    if ray_log.location:
        print(f"Ray's log:       {ray_log.location}", flush=True)
    return result


def _resume(storage: Storage, config: SweepConfig, address: str | None, restart_errored: bool,
            ray_log: RayLog) -> SweepResult:
    import ray
    from ray import tune

    from orchestrator.experiment.storage import check_writable_from_every_node
    from orchestrator.run import watchdog
    from orchestrator.run.launch import build_trainable, ensure_ray
    from orchestrator.run.preflight import build_plan
    from orchestrator.run.ray_log import tune_console_off
    from orchestrator.run.teacher import (
        DISTILL_FILE,
        attach_teacher_targets,
        describe,
        pinned_teacher,
    )
    from orchestrator.search.space import to_param_space

    moved = repair_experiment_state(storage)
    if moved:
        print(f"Set aside unreadable experiment state: {moved}", flush=True)
    ensure_ray(address, quiet=not ray_log.verbose)
    ray_log.capture_workers()
    problems = check_writable_from_every_node(storage.uri, ray.nodes())
    if problems:
        raise ConfigError(problems, "resume")
    if config.distill is not None and storage.exists(DISTILL_FILE):
        config = pinned_teacher(config, json.loads(storage.read_text(DISTILL_FILE)))
    plan = build_plan(config, nodes=ray.nodes(), stored=True)  # same data, same split
    teacher = attach_teacher_targets(config, plan)  # the same teacher, run once again
    if teacher is not None:
        print(describe(teacher), flush=True)
    restore_kwargs: dict[str, Any] = {}
    if not storage.is_local:
        restore_kwargs["storage_filesystem"] = storage.fs
    tuner = tune.Tuner.restore(
        storage.root if not storage.is_local else storage.uri,
        trainable=build_trainable(config, plan),
        param_space=to_param_space(config),
        resume_unfinished=True,
        resume_errored=not restart_errored,
        restart_errored=restart_errored,
        **restore_kwargs,
    )
    watchdog.clear()
    with tune_console_off():
        tuner.fit()
    watchdog.raise_if_stalled(storage.uri)
    return load_results(storage.uri)
