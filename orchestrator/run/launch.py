"""`launch(config)`: validate, prepare once, measure the baseline, run the sweep, return results."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import ConfigSource, load_config
from orchestrator.config.schema import SweepConfig
from orchestrator.experiment.errors import ExperimentExistsError
from orchestrator.experiment.layout import (
    BASELINE_FILE,
    DISTILL_FILE,
    LEAKAGE_FILE,
    SWEEP_CONFIG_FILE,
)
from orchestrator.experiment.results import SweepResult, load_results
from orchestrator.experiment.storage import (
    Storage,
    StorageError,
    check_writable_from_every_node,
    check_writable_here,
    open_storage,
)
from orchestrator.run import watchdog
from orchestrator.run.leakage import (
    LeakageReport,
    check_data_leakage,
    enforce_leakage_policy,
    format_leakage_warning,
)
from orchestrator.run.preflight import Plan, build_plan, groups_that_fit
from orchestrator.run.ray_address import connecting_to
from orchestrator.run.ray_log import RayLog, tune_console_off
from orchestrator.run.teacher import attach_teacher_targets, describe

log = logging.getLogger(__name__)


# We checkpoint at every evaluation on purpose; Tune's warning about frequent snapshots is noise.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

# What a data-parallel trial's own process reserves (it trains nothing; README: Placement).
DATA_PARALLEL_TRIAL_MEMORY = 512 * 2**20


def ensure_ray(address: str | None = None, *, quiet: bool = False) -> None:
    """Connect to Ray the way Ray itself does, so `launch()` uses the cluster the user is on.

    `address=None`: the cluster in RAY_ADDRESS, else a new local Ray for this process (the
    embedded default). `"auto"`: a cluster started with `ray start` on this machine. `"local"`:
    always a new one. (Ray's own default would also follow a `ray_current_cluster` file left in
    /tmp by any earlier cluster, and hang forever when that cluster is gone.) `quiet`: trials
    draw no progress bars (model loading, saving), which would fill Ray's log with redraws.
    """
    import ray

    from orchestrator.run.ray_compat import patch_actor_manager, patch_moved_experiment

    patch_actor_manager()  # a trial killed for memory fails that trial, not the sweep
    patch_moved_experiment()  # a resumed copy's new trials are written into the copy
    if ray.is_initialized():
        return
    # Tune's worker processes must import the project even when it is not pip-installed.
    root = str(Path(__file__).resolve().parents[2])
    runtime_env = {"env_vars": {
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p),
        # Library deprecation chatter from every trial buries the progress view.
        "PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning",
    }}
    if quiet:
        runtime_env["env_vars"]["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # transformers' too
    kwargs: dict[str, Any] = {"runtime_env": runtime_env, "log_to_driver": True}
    source = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    if address == "local":
        ray.init(address=address, include_dashboard=False, **kwargs)
        return
    with connecting_to(address, source):  # a wrong address: an error naming it, in seconds
        ray.init(address=address, **kwargs)


def measure_baseline(config: SweepConfig, plan: Plan) -> dict[str, float]:
    """The untrained model's metrics on the same validation split, once per sweep, in a Ray
    task with one trial's resources (it also warms the node's fast-loading model cache)."""
    import ray

    from trainables.baseline import evaluate_untrained

    task = ray.remote(evaluate_untrained).options(
        num_cpus=config.resources.cpus_per_trial, num_gpus=config.resources.gpus_per_trial
    )
    return ray.get(task.remote(plan.spec, plan.data, plan.pad_id))


def build_trainable(config: SweepConfig, plan: Plan) -> Any:
    """The task's trainable with the prepared data attached (object store) and its resources."""
    from ray import tune

    from trainables import get_trainable

    trainable = tune.with_parameters(
        get_trainable(config.task), spec=plan.spec, data=plan.data, pad_id=plan.pad_id
    )
    r = config.resources
    if r.workers_per_trial == 1:
        return tune.with_resources(trainable, {"cpu": r.cpus_per_trial, "gpu": r.gpus_per_trial})
    # Data-parallel: the trial process only drives a Ray Train run, whose workers reserve their
    # own placement group (trainables.data_parallel). It takes no CPU, or the workers of a
    # 2-CPU machine could never start; Tune needs some resource in a bundle, so: memory.
    return tune.with_resources(trainable, tune.PlacementGroupFactory(
        [{"memory": DATA_PARALLEL_TRIAL_MEMORY}]))


def max_concurrent_trials(config: SweepConfig, nodes: list[dict[str, Any]]) -> int | None:
    """`search.max_concurrent_trials`, and for data-parallel trials at most as many as the
    cluster places at once: their trial processes hold no CPU, so Tune alone would start them
    all, each waiting for its workers."""
    limit = config.search.max_concurrent_trials
    if config.resources.workers_per_trial == 1:
        return limit
    fit = max(1, groups_that_fit(config, nodes))
    return min(limit, fit) if limit else fit


def build_callbacks(config: SweepConfig, scheduler: Any, total: int,
                    live: bool | None) -> list[Any]:
    from orchestrator.run.hygiene import CheckpointJanitor, WorkerGroupReaper
    from orchestrator.run.logging_callbacks import build_logging_callbacks
    from orchestrator.run.progress import ProgressView
    from orchestrator.run.watchdog import StallWatchdog
    from orchestrator.search.scheduler_state import SchedulerStateCallback

    mode = config.resolved_mode
    callbacks: list[Any] = [ProgressView(config.metric, mode, total, live=live),
                            SchedulerStateCallback(scheduler)]
    if config.keep_top_k_trials is not None:
        callbacks.append(CheckpointJanitor(config.metric, mode, config.keep_top_k_trials))
    if config.resources.workers_per_trial > 1:
        callbacks.append(WorkerGroupReaper())
    callbacks += build_logging_callbacks(config.logging, experiment_name=config.name)
    if config.stall_timeout_s is not None:
        callbacks.append(StallWatchdog(config.stall_timeout_s))
    return callbacks


def build_tuner(
    config: SweepConfig, plan: Plan, storage: Storage, *, live: bool | None = None
) -> Any:
    import ray
    from ray import tune

    from orchestrator.search.schedulers import build_scheduler
    from orchestrator.search.searchers import build_search_alg
    from orchestrator.search.space import grid_size, to_param_space

    mode = config.resolved_mode
    total = config.num_samples * grid_size(config)
    scheduler = build_scheduler(config, plan.max_steps, plan.tokens_per_step)
    limit = max_concurrent_trials(config, ray.nodes())
    capped = config if limit == config.search.max_concurrent_trials else config.model_copy(
        update={"search": config.search.model_copy(update={"max_concurrent_trials": limit})})
    return tune.Tuner(
        build_trainable(config, plan),
        param_space=to_param_space(config),
        tune_config=tune.TuneConfig(
            metric=config.metric,
            mode=mode,
            search_alg=build_search_alg(capped),
            scheduler=scheduler,
            num_samples=config.num_samples,  # concurrency is capped by the search algorithm
            reuse_actors=(config.resources.reuse_actors if config.resources.reuse_actors
                          is not None else config.scheduler.type != "pbt"
                          and config.resources.workers_per_trial == 1),
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=storage.uri,
            checkpoint_config=tune.CheckpointConfig(
                # PBT restores a bottom trial from a donor's checkpoint some time after it was
                # written; pruning by count would delete it first. Finished trials are still
                # pruned experiment-wide by the janitor.
                num_to_keep=None if config.scheduler.type == "pbt"
                else config.keep_checkpoints_per_trial,
                checkpoint_score_attribute=config.metric,
                checkpoint_score_order=mode,
            ),
            failure_config=tune.FailureConfig(max_failures=config.max_retries),
            callbacks=build_callbacks(config, scheduler, total, live),
            verbose=0,
        ),
    )


def check_leakage_before_sweep(config: SweepConfig, plan: Plan) -> LeakageReport | None:
    """Print how many held-out texts also occur in train; refuse when the config says so."""
    if not config.quality.check_leakage:
        return None
    report = check_data_leakage(plan.data, config.quality.near_duplicate_threshold)
    print(format_leakage_warning(report), flush=True)
    enforce_leakage_policy(report, config.quality.refuse_on_leakage)
    return report


def prepare_storage(config: SweepConfig, nodes: list[dict[str, Any]]) -> Storage:
    """Open the storage, refuse to overwrite an experiment, and check every node can write."""
    assert config.name is not None
    try:
        storage = open_storage(config.storage_path)
    except StorageError as err:
        raise ConfigError([str(err)], "sweep") from None
    unreachable = check_writable_here(config.storage_path)  # bounded: never hangs on S3
    if unreachable:
        raise ConfigError(unreachable, "sweep")
    if storage.exists(config.name, SWEEP_CONFIG_FILE):
        raise ExperimentExistsError(
            f"experiment {storage.uri_of(config.name)!r} already exists; choose another `name` "
            "(or --set name=...)"
        )
    problems = check_writable_from_every_node(storage.uri, nodes)
    if problems:
        raise ConfigError(problems, "sweep")
    return storage


def launch(
    config: ConfigSource,
    overrides: list[str] | None = None,
    *,
    address: str | None = None,
    live: bool | None = None,
    verbose: bool = False,
) -> SweepResult:
    """Run a sweep and return its results.

    `config`: a YAML path, a dict, or a `SweepConfig`. Runs on the Ray this process is
    connected to (or `address`), else starts a local Ray. Ray's own output goes to
    `EXPERIMENT/logs/ray.log` (see `orchestrator.run.ray_log`); `verbose=True` leaves it on the
    console.

    >>> from orchestrator import launch
    >>> result = launch("examples/quickstart.yaml")  # doctest: +SKIP
    >>> model, tokenizer = result.load_best_model()  # doctest: +SKIP
    """
    # A copy: the caller's config object is left as it was given.
    cfg = load_config(config, overrides).model_copy(deep=True)
    if cfg.name is None:
        cfg.name = f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    if cfg.base_dir is None:
        cfg.base_dir = os.getcwd()
    with RayLog(verbose, title=f"sweep run {cfg.name}") as ray_log:
        result = _run(cfg, address, live, ray_log)
    print(result.summary(), flush=True)
    if ray_log.location:
        print(f"Ray's log:       {ray_log.location}", flush=True)
    return result


def _run(cfg: SweepConfig, address: str | None, live: bool | None,
         ray_log: RayLog) -> SweepResult:
    assert cfg.name is not None
    ensure_ray(address, quiet=not ray_log.verbose)
    ray_log.capture_workers()
    import ray

    storage = prepare_storage(cfg, ray.nodes())
    plan = build_plan(cfg, nodes=ray.nodes())
    leakage = check_leakage_before_sweep(cfg, plan)  # raises LeakageError when refused
    # A distillation teacher runs before the experiment's files exist: if it fails, the same
    # command can simply run again.
    teacher = attach_teacher_targets(cfg, plan)
    out = storage.uri_of(cfg.name)
    storage.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
                       cfg.name, SWEEP_CONFIG_FILE)
    ray_log.attach(out)  # the folder is this sweep's own from here on
    if leakage is not None:
        storage.write_text(json.dumps(leakage.to_dict(), indent=2), cfg.name, LEAKAGE_FILE)
    print(f"Experiment: {out}\nData: {json.dumps(plan.data.summary())}", flush=True)
    if cfg.logging.tensorboard:
        print(f"TensorBoard: tensorboard --logdir {out}", flush=True)
    if ray_log.location:
        print(f"Ray's output: {ray_log.location} (--verbose prints it here)", flush=True)
    if teacher is not None:
        storage.write_text(json.dumps(teacher, indent=2), cfg.name, DISTILL_FILE)
        print(describe(teacher), flush=True)
    if cfg.baseline:
        started = time.monotonic()
        baseline = measure_baseline(cfg, plan)
        storage.write_text(json.dumps(baseline, indent=2), cfg.name, BASELINE_FILE)
        print(f"Untrained model: {cfg.metric}={baseline[cfg.metric]:.4f} "
              f"({time.monotonic() - started:.0f}s)", flush=True)
    watchdog.clear()
    with tune_console_off():
        build_tuner(cfg, plan, storage, live=live).fit()
    watchdog.raise_if_stalled(out)  # its state is saved: `sweep resume` continues it
    return load_results(out)
