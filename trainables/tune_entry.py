"""The glue between Ray Tune and `loop.fit`: merge the sampled config, resume, report.

Failures are sorted here: a NaN/inf loss ends the trial as *diverged* and an out-of-memory
error as *infeasible*; both report the worst value of the sweep metric (so the searcher learns
the region is bad) and end normally, so Tune does not retry them. Any other exception fails
the trial, and Tune retries it from its latest intact checkpoint. With `workers > 1` this
process trains nothing itself: it runs the trial on Ray Train workers and relays their reports
(see `data_parallel`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from trainables import data_parallel
from trainables.config import REPORTED_METRICS, TrialSpec, merge_trial_config
from trainables.data import PreparedData
from trainables.loop import DivergedError, fit
from trainables.resume import intact_checkpoint
from trainables.runtime import release_memory, threads_for_trial

log = logging.getLogger(__name__)


def worst_value(spec: TrialSpec) -> float:
    """What a diverged or infeasible trial reports for the sweep metric."""
    return float("inf") if spec.mode == "min" else 0.0


def _failure_report(trial: TrialSpec, kind: str, err: BaseException) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        name: worst_value(trial) if name == trial.metric else float("nan")
        for name in {*REPORTED_METRICS[trial.task], trial.metric}  # also a per-class metric
    }
    return {**metrics, kind: 1.0, "error": f"{type(err).__name__}: {err}"[:500]}


STORAGE_RETRY_S = float(os.environ.get("SWEEP_STORAGE_RETRY_S", "300"))


def report_with_retries(metrics: dict[str, Any], checkpoint: Path | Any) -> None:
    """Report with a checkpoint, riding out a storage outage instead of failing the trial.

    The upload happens inside `tune.report`; when it raises (the store is unreachable), nothing
    was reported and the checkpoint index did not advance, so the same report is retried with
    backoff for up to SWEEP_STORAGE_RETRY_S seconds (default 300) before the trial fails.
    `checkpoint`: a local folder, or a `tune.Checkpoint` already on the storage (a data-parallel
    trial's, as Ray Train uploaded it).
    """
    from ray import tune

    if isinstance(checkpoint, Path):
        checkpoint = tune.Checkpoint.from_directory(str(checkpoint))
    deadline = time.monotonic() + STORAGE_RETRY_S
    delay = 1.0
    while True:
        try:
            tune.report(metrics, checkpoint=checkpoint)
            return
        except OSError as err:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("checkpoint upload failed (%s); retrying in %.0fs", err, delay)
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


def run_trial(config: dict[str, Any], *, spec: TrialSpec, data: PreparedData,
              pad_id: int) -> None:
    import ray
    from ray import tune

    trial = merge_trial_config(spec, config)
    torch.set_num_threads(threads_for_trial(trial))
    # Tune records node_ip, which is the same for every node of a one-machine cluster.
    where = {"node_id": ray.get_runtime_context().get_node_id()}

    def report(metrics: dict[str, Any], checkpoint: Path | Any) -> None:
        report_with_retries({**where, **metrics}, checkpoint)  # a worker's node_id wins

    checkpoint = tune.get_checkpoint()
    try:
        if trial.workers > 1:
            data_parallel.run(trial, data, pad_id, checkpoint, report)
        elif checkpoint is not None:
            with intact_checkpoint(checkpoint) as folder:
                fit(trial, data, pad_id, report, resume_from=folder)
        else:
            fit(trial, data, pad_id, report)
    except DivergedError as err:
        tune.report({**_failure_report(trial, "diverged", err), **where})
    except (torch.OutOfMemoryError, MemoryError) as err:
        # Retrying the same config would run out of memory again: record it as infeasible.
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        tune.report({**_failure_report(trial, "infeasible", err), **where})
    # Not in a `finally`: a trial stopped by the scheduler leaves through SystemExit, whose
    # traceback still holds the model; the next trial's start (loop.fit) releases that one.
    release_memory()
