"""Where a trial process runs: its device, its CPU threads, and its random seeds.

Shared by the training loop, the data-parallel workers and the baseline evaluation, so none of
them imports another for these.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from trainables.config import TrialSpec


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def threads_for_trial(spec: TrialSpec) -> int:
    """`train.torch_threads`, else the CPUs Ray assigned to this trial, else every core."""
    if spec.train.torch_threads is not None:
        return spec.train.torch_threads
    import ray

    cpus = None
    if ray.is_initialized():  # get_runtime_context() would otherwise start a Ray
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return max(1, int(cpus or os.cpu_count() or 1))
