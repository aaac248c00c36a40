"""Ranks 1..W-1 of a data-parallel trial: Ray actors in the trial's own placement group.

The Tune trial process is rank 0 (bundle 0 of the group `launch` asks for); each other rank is
an actor pinned to bundle i, so Tune's placement (PACK, SPREAD, ...) decides where they run and
the resources are released with the trial. Rank 0 keeps everything Tune-facing: it restores the
checkpoint, reports and saves; the actors only train.

Failure handling, so a broken group never hangs a trial: a rank that raises leaves the process
group, which makes its peers' next collective fail at once; rank 0 then re-raises the worker's
own error (an out-of-memory one stays infeasible), and Tune retries the trial from its
checkpoint. A worker whose process or node is lost without closing its sockets is caught by a
watchdog thread on rank 0, which ends the trial process if rank 0 has not failed by itself
within a grace period. However the trial ends (finished, failed, or stopped early by the
scheduler), the actors are killed and the group destroyed before the process runs anything else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainables import distributed
from trainables.config import TrialSpec
from trainables.data import PreparedData
from trainables.distributed import SINGLE, Rank

log = logging.getLogger(__name__)

START_TIMEOUT_S = float(os.environ.get("SWEEP_DP_START_TIMEOUT_S", "600"))
WATCHDOG_GRACE_S = float(os.environ.get("SWEEP_DP_WATCHDOG_GRACE_S", "60"))
# How long rank 0, failing in a collective, waits for the worker that caused it to say why.
_CAUSE_WAIT_S = 10.0


class WorkerRank:
    """One data-parallel rank above 0; `run` trains until the trial's budget is spent."""

    def node_ip(self) -> str:
        import ray

        return str(ray.util.get_node_ip_address())

    def run(self, trial: TrialSpec, data: PreparedData, pad_id: int, rank: int,
            world_size: int, master_addr: str, master_port: int) -> None:
        import torch

        from trainables.loop import fit
        from trainables.runtime import pick_device, threads_for_trial

        torch.set_num_threads(threads_for_trial(trial))
        me = Rank(rank, world_size)
        distributed.init_group(me, master_addr, master_port, pick_device(), self.node_ip())
        try:
            fit(trial, data, pad_id, _never_called, rank=me)
        finally:
            distributed.destroy_group()


def _never_called(metrics: dict[str, float], folder: Path) -> None:
    raise AssertionError("only rank 0 reports")


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


class _Watchdog(threading.Thread):
    """Ends this process when a worker died and rank 0 did not notice within the grace period
    (a lost node can leave rank 0 blocked in a collective until the long collective timeout)."""

    def __init__(self, refs: list[Any]) -> None:
        super().__init__(daemon=True, name="dp-watchdog")
        self.refs = list(refs)
        self.disarmed = threading.Event()

    def run(self) -> None:
        import ray

        pending = self.refs
        while pending and not self.disarmed.is_set():
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in done:
                try:
                    ray.get(ref)
                except Exception as err:  # the worker failed: rank 0 should fail shortly
                    if self.disarmed.wait(WATCHDOG_GRACE_S):
                        return
                    log.error("data-parallel worker failed (%s) and rank 0 is still blocked "
                              "after %.0fs; ending the trial process so Tune retries it",
                              err, WATCHDOG_GRACE_S)
                    os._exit(1)


def _worker_error(refs: list[Any], wait_s: float) -> BaseException | None:
    """The first error a worker raised, if one fails within `wait_s`."""
    import ray

    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=wait_s)
        if not done:
            return None
        try:
            ray.get(done[0])
        except Exception as err:
            return err
    return None


def _caused_by_a_peer(err: BaseException) -> bool:
    import torch.distributed as dist

    return isinstance(err, dist.DistError) or (
        isinstance(err, RuntimeError) and any(
            word in str(err) for word in ("gloo", "NCCL", "Connection", "peer", "timed out")))


@contextlib.contextmanager
def data_parallel(trial: TrialSpec, data: PreparedData, pad_id: int) -> Iterator[Rank]:
    """Start ranks 1..W-1 in this trial's placement group; yield rank 0 (this process).

    With `trial.workers == 1` it starts nothing and yields the single-process rank.
    """
    world = trial.workers
    if world == 1:
        yield SINGLE
        return
    import ray
    from ray.util import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from trainables.runtime import pick_device

    group = get_current_placement_group()
    if group is None or len(group.bundle_specs) < world:
        raise RuntimeError(
            f"workers: {world} needs the trial to run in a placement group of {world} bundles "
            "(launch asks for one when resources.workers_per_trial > 1); run it through "
            "orchestrator.run.launch"
        )
    actor_cls: Any = ray.remote(WorkerRank)
    actors: list[Any] = []
    for index in range(1, world):
        bundle = group.bundle_specs[index]
        actors.append(actor_cls.options(
            num_cpus=bundle.get("CPU", 0), num_gpus=bundle.get("GPU", 0),
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=index),
        ).remote())
    watchdog: _Watchdog | None = None
    try:
        ray.get([a.node_ip.remote() for a in actors], timeout=START_TIMEOUT_S)
        master = str(ray.util.get_node_ip_address())
        port = _free_port(master)
        data_ref = ray.put(data)
        refs = [a.run.remote(trial, data_ref, pad_id, i, world, master, port)
                for i, a in enumerate(actors, start=1)]
        watchdog = _Watchdog(refs)
        watchdog.start()
        distributed.init_group(Rank(0, world), master, port, pick_device(), master)
        try:
            yield Rank(0, world)
        except Exception as err:
            cause = _worker_error(refs, _CAUSE_WAIT_S if _caused_by_a_peer(err) else 0.0)
            if cause is not None:
                raise cause from err
            raise
        ray.get(refs, timeout=START_TIMEOUT_S)  # they finish with rank 0; surfaces late errors
    finally:
        if watchdog is not None:
            watchdog.disarmed.set()
        distributed.destroy_group()
        for actor in actors:
            ray.kill(actor, no_restart=True)
