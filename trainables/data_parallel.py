"""Data-parallel trials on Ray Train: the Tune trial builds a `TorchTrainer` and relays its rank
0's reports and checkpoints to Tune.

How the two nest, for a trial of W workers:

    Tune trial process (`run`; 0 CPUs, a little memory)
      |- ReportChannel actor (0 CPUs): rank 0's reports in, Tune's decision out
      '- TorchTrainer.fit() in a thread -> Ray Train controller actor (0 CPUs, this node)
           '- W worker actors running `train_worker`, in one placement group of W bundles
              (cpus_per_worker, gpus_per_worker each; resources.placement_strategy)

At each evaluation every rank calls `ray.train.report` (rank 0 with its checkpoint, which Train
uploads to a staging folder inside the trial's folder on the shared storage); rank 0 then hands
the metrics and the uploaded checkpoint to this process and waits. This process reports them
with `tune.report`, which copies the checkpoint into the trial's `checkpoint_00000N` (so export,
ranked checkpoints, PBT and the janitor see what a one-worker trial writes), deletes the staged
copy and answers: go on, or stop when Tune stopped the trial (ASHA, PBT). Rank 0 broadcasts the
answer, so the workers never run ahead of the scheduler and a stopped trial ends cleanly, its
workers released before the trial process is reused.

When the trial ends before its Train run (Tune stopped it: ASHA, PBT, the end of the sweep), Tune
removes the trial's own placement group at once, which ends this process and the Train
controller it owns; the workers' placement group would stay reserved (Ray scopes it to the job,
and Train's cleaner for it needs the dashboard's state API). So rank 0 writes the group's id
into the staging folder first, and whoever comes next removes a group left there: the driver
(`orchestrator.run.hygiene.WorkerGroupReaper`, when the trial stops running) or the trial's
next attempt, with the staged checkpoints still there.

Failures: Train's own retries are off (`max_failures=0`). A worker that raises or dies fails the
Train run, this process re-raises (a worker's DivergedError or out-of-memory error as itself, so
`tune_entry` sorts it as it does for one process) and Tune retries the trial from its latest
checkpoint, which `tune.get_checkpoint()` gives this process and rank 0 resumes from: Train V2
has no `resume_from_checkpoint`, so it travels in the `train_loop_config`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import os
import posixpath
import queue
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from trainables.config import TrialSpec
from trainables.data import PreparedData
from trainables.distributed import Rank
from trainables.loop import DivergedError, fit
from trainables.resume import intact_checkpoint
from trainables.runtime import threads_for_trial

log = logging.getLogger(__name__)

STAGING_DIR = "train_staging"  # inside the trial's folder: Train's checkpoints before Tune's copy
GROUP_FILE = "placement_group.json"  # in STAGING_DIR while a Train run holds its workers' group
# How long a trial's workers may wait to be placed before the trial fails (and Tune retries it).
START_TIMEOUT_S = float(os.environ.get("SWEEP_DP_START_TIMEOUT_S", "600"))
# How long a rank waits in a collective: it must cover rank 0's evaluation and checkpoint upload.
COLLECTIVE_TIMEOUT_S = int(float(os.environ.get("SWEEP_DP_TIMEOUT_S", "1800")))
_STOP_WAIT_S = 60.0  # a stopped trial's workers leave within this, or Tune kills the process
_TRAIN_GROUP_START_S = 60.0  # Ray Train's default RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S

Relay = Callable[[dict[str, Any], Any], None]


class ReportChannel:
    """Rank 0 -> the Tune trial: one report at a time, and the trial's answer back."""

    def __init__(self) -> None:
        self._reports: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._answers: queue.Queue[bool] = queue.Queue(maxsize=1)

    def send(self, report: Any) -> bool:
        """Rank 0: hand over a report; True to go on training, False to stop."""
        self._reports.put(report)
        return self._answers.get()

    def receive(self, timeout_s: float) -> Any:
        try:
            return self._reports.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def answer(self, go_on: bool) -> None:
        self._answers.put(go_on)


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: `loop.fit` as rank `world_rank` of the trial's process group."""
    import ray
    import ray.train

    context = ray.train.get_context()
    rank = Rank(context.get_world_rank(), context.get_world_size())
    trial: TrialSpec = config["trial"]
    torch.set_num_threads(threads_for_trial(trial))
    data: PreparedData = ray.get(config["data"])
    channel = config["channel"]
    where = {"node_id": ray.get_runtime_context().get_node_id()}  # rank 0's node
    if rank.is_main:
        _write_group_marker(config["filesystem"], config["staging"])

    def report(metrics: dict[str, float], folder: Path | None) -> bool | None:
        if folder is None:  # ranks above 0: Train's report is collective
            ray.train.report({}, checkpoint=None)
            return None
        reported: dict[str, Any] = {**metrics, **where}
        ray.train.report(reported, checkpoint=ray.train.Checkpoint.from_directory(str(folder)))
        uploaded = ray.train.get_checkpoint()
        return bool(ray.get(channel.send.remote((reported, uploaded))))

    checkpoint = config["checkpoint"] if rank.is_main else None
    if checkpoint is not None:
        with intact_checkpoint(checkpoint) as folder:
            fit(trial, data, config["pad_id"], report, resume_from=folder, rank=rank)
    else:
        fit(trial, data, config["pad_id"], report, rank=rank)


def _write_group_marker(filesystem: Any, staging: str) -> None:
    import ray

    group = ray.util.get_current_placement_group()
    if group is None:
        return
    filesystem.create_dir(staging)
    with filesystem.open_output_stream(posixpath.join(staging, GROUP_FILE)) as out:
        out.write(json.dumps({"placement_group": group.id.hex()}).encode())


def remove_leftovers(filesystem: Any, trial_path: str) -> bool:
    """Clean up after a trial's Train run that is over but did not end cleanly (see the module
    docstring): remove its workers' placement group, if the marker names one that still exists
    (True then), and the staging folder. Only for a trial that is not running."""
    import ray
    from ray.util.placement_group import (
        PlacementGroup,
        placement_group_table,
        remove_placement_group,
    )

    staging = posixpath.join(trial_path, STAGING_DIR)
    try:
        with filesystem.open_input_stream(posixpath.join(staging, GROUP_FILE)) as f:
            group_id = json.loads(f.read())["placement_group"]
    except (OSError, ValueError, KeyError):  # none (the run ended cleanly), or unreadable
        group_id = None
    removed = False
    if group_id is not None:
        group = PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id)))
        removed = placement_group_table(group).get("state") not in (None, "REMOVED")
        if removed:
            remove_placement_group(group)  # also ends the workers still running in it
            log.info("removed the placement group %s a stopped trial's workers held", group_id)
    _delete(filesystem, staging)
    return removed


def _worker_env() -> dict[str, str]:
    """Gloo binds to the address the host name resolves to; on a cluster of loopback nodes
    (tests) it must use the loopback interface instead. A GLOO_SOCKET_IFNAME set here wins."""
    import psutil
    import ray

    if "GLOO_SOCKET_IFNAME" in os.environ:
        return {"GLOO_SOCKET_IFNAME": os.environ["GLOO_SOCKET_IFNAME"]}
    ip = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(ip).is_loopback:
        return {}
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.address == ip for a in addresses):
            return {"GLOO_SOCKET_IFNAME": name}
    return {}


def build_trainer(trial: TrialSpec, loop_config: dict[str, Any], storage_path: str,
                  filesystem: Any) -> Any:
    """The trial's `TorchTrainer`: W workers of `cpus_per_worker`/`gpus_per_worker`, placed by
    `placement_strategy`, without Train-level retries (Tune retries the trial)."""
    from ray.train.torch import TorchConfig

    # What `ray.train` and `ray.train.torch` export with Train V2 on (the default), imported
    # from where they are defined, so type checkers see the V2 signatures.
    from ray.train.v2.api.config import FailureConfig, RunConfig, ScalingConfig
    from ray.train.v2.torch.torch_trainer import TorchTrainer

    # Tune already retries a trial whose node is lost; Train's preemption watcher and metrics
    # would be two more processes per trial.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
    per_worker = {"CPU": trial.cpus_per_worker}
    if trial.gpus_per_worker:
        per_worker["GPU"] = trial.gpus_per_worker
    env = _worker_env()
    return TorchTrainer(
        train_worker,
        train_loop_config=loop_config,
        torch_config=TorchConfig(timeout_s=COLLECTIVE_TIMEOUT_S),
        scaling_config=ScalingConfig(
            num_workers=trial.workers, use_gpu=trial.gpus_per_worker > 0,
            resources_per_worker=per_worker, placement_strategy=trial.placement_strategy),
        run_config=RunConfig(
            name=f"run-{uuid.uuid4().hex[:8]}", storage_path=storage_path,
            storage_filesystem=filesystem,
            # A group that cannot be placed fails Train's start every 60 s; give up after
            # SWEEP_DP_START_TIMEOUT_S.
            failure_config=FailureConfig(max_failures=0, controller_failure_limit=max(
                1, math.ceil(START_TIMEOUT_S / _TRAIN_GROUP_START_S))),
            worker_runtime_env={"env_vars": env} if env else None,
        ),
    )


def _worker_cause(err: BaseException) -> BaseException:
    """A worker's own DivergedError or out-of-memory error inside Train's WorkerGroupError."""
    failures = getattr(err, "worker_failures", None) or {}
    for _, failure in sorted(failures.items()):
        cause = getattr(failure, "_base_exc", failure)  # Train wraps it with its traceback
        if isinstance(cause, DivergedError | torch.OutOfMemoryError | MemoryError):
            return cause  # type: ignore[no-any-return]
    return err


class _Fit(threading.Thread):
    """`trainer.fit()` in the background, so this process can serve rank 0's reports."""

    def __init__(self, trainer: Any) -> None:
        super().__init__(daemon=True, name="ray-train-fit")
        self.trainer = trainer
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.trainer.fit()
        except BaseException as err:  # re-raised in the trial's thread
            self.error = err


def _delete(filesystem: Any, path: str) -> None:
    with contextlib.suppress(OSError):  # absent already, or the store is briefly away
        filesystem.delete_dir(path)


def run(trial: TrialSpec, data: PreparedData, pad_id: int, checkpoint: Any,
        relay: Relay) -> None:
    """Train the trial on `trial.workers` Ray Train workers; `relay(metrics, checkpoint)`
    reports each evaluation to Tune (raising SystemExit when Tune stops the trial)."""
    import ray
    from ray import tune
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    storage = tune.get_context().get_storage()
    filesystem = storage.storage_filesystem
    staging = posixpath.join(storage.trial_fs_path, STAGING_DIR)
    remove_leftovers(filesystem, storage.trial_fs_path)  # of an earlier attempt
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    channel: Any = ray.remote(ReportChannel).options(
        num_cpus=0, max_concurrency=4, scheduling_strategy=here).remote()
    trainer = build_trainer(trial, {"trial": trial, "data": ray.put(data), "pad_id": pad_id,
                                    "checkpoint": checkpoint, "channel": channel,
                                    "filesystem": filesystem, "staging": staging},
                            staging, filesystem)
    fitting = _Fit(trainer)
    fitting.start()
    try:
        while True:
            item = ray.get(channel.receive.remote(1.0))
            if item is None:
                if not fitting.is_alive():
                    break
                continue
            metrics, uploaded = item
            try:
                relay(metrics, tune.Checkpoint(uploaded.path, filesystem=uploaded.filesystem))
            except BaseException:  # stopped by the scheduler (SystemExit), or the report failed
                channel.answer.remote(False)
                fitting.join(_STOP_WAIT_S)
                raise
            _delete(uploaded.filesystem, uploaded.path)
            channel.answer.remote(True)
        fitting.join()
        if fitting.error is not None:
            cause = _worker_cause(fitting.error)
            if cause is not fitting.error:
                raise cause from fitting.error
            raise fitting.error
    finally:
        if not fitting.is_alive():  # else the group marker stays, for the reaper
            _delete(filesystem, staging)
        ray.kill(channel)
