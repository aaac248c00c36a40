"""The glue between Ray Tune and `loop.fit`: merge the sampled config, resume, report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from trainables.config import REPORTED_METRICS, TrialSpec, merge_trial_config
from trainables.data import PreparedData
from trainables.loop import DivergedError, fit


def threads_for_trial(spec: TrialSpec) -> int:
    if spec.train.torch_threads is not None:
        return spec.train.torch_threads
    import ray

    cpus = None
    if ray.is_initialized():  # get_runtime_context() would otherwise start a Ray
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return max(1, int(cpus or os.cpu_count() or 1))


def worst_value(spec: TrialSpec) -> float:
    """What a diverged trial reports for the sweep metric: the worst possible value."""
    return float("inf") if spec.mode == "min" else 0.0


def run_trial(config: dict[str, Any], *, spec: dict[str, Any], data: PreparedData,
              pad_id: int) -> None:
    from ray import tune

    trial = merge_trial_config(spec, config)
    torch.set_num_threads(threads_for_trial(trial))

    def report(metrics: dict[str, float], folder: Path) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))

    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                fit(trial, data, pad_id, report, resume_from=Path(folder))
        else:
            fit(trial, data, pad_id, report)
    except DivergedError as err:
        # End the trial as diverged, and tell the searcher it was bad, instead of failing it.
        metrics = {name: worst_value(trial) if name == trial.metric else float("nan")
                   for name in REPORTED_METRICS[trial.task]}
        tune.report({**metrics, "diverged": 1.0, "error": str(err)})
