"""Where a trial process runs: its device, its CPU threads, its random seeds and its memory.

Shared by the training loop, the data-parallel workers and the baseline evaluation, so none of
them imports another for these.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import random
import weakref

import numpy as np
import torch

from trainables.config import TrialSpec

log = logging.getLogger(__name__)


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


# The models of this process's trials, weakly: one still alive once its trial has ended is
# held by a reference cycle (or leaked), and only then is the slow cyclic collector run (a
# full gc.collect() takes 0.3-0.9 s with torch, transformers and Ray imported).
_trial_models: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()


def watch_for_release(model: torch.nn.Module) -> None:
    """Note a trial's model, so `release_memory` can tell whether it outlived its trial."""
    _trial_models.add(model)


def release_memory() -> None:
    """Free what finished trials left behind, so a reused trial process (Tune's
    `reuse_actors`) starts the next trial without the last one's model and optimizer, and a
    GPU shared by fractional trials gets the memory back.

    Call it where the trial's own references are gone (after `fit` returned, or before the
    next trial builds its model). `malloc_trim` hands freed heap pages back to the OS, so the
    RSS shows what is still alive.
    """
    if len(_trial_models):
        gc.collect()
        if len(_trial_models):
            log.warning("%d model(s) of ended trials are still referenced after gc.collect(): "
                        "something keeps them alive (a module-level cache?), and this process "
                        "holds their memory", len(_trial_models))
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_kernel_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0). True if done."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _kernel_peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class PeakMemory:
    """A trial's peak memory since it started, reported as `peak_rss_mb` and, on CUDA,
    `peak_cuda_mb` (MiB).

    `getrusage`'s `ru_maxrss` is the peak of the process's whole life, so in a reused trial
    process it would carry an earlier, bigger trial's peak. Instead the kernel's own high-water
    mark (VmHWM) is reset when the trial starts (`/proc/self/clear_refs`, Linux >= 4.0): the
    peak then covers every moment of the trial, including peaks between reports. Where that
    reset is refused, the peak is the largest RSS sampled (psutil) at each optimizer step and
    report since the trial started. CUDA: `max_memory_allocated` after
    `reset_peak_memory_stats` at the start (the tensors this process allocated, not the
    allocator's cache or other processes sharing the GPU).
    """

    def __init__(self, device: torch.device) -> None:
        import psutil

        release_memory()  # the previous trial's garbage must not count as this one's
        self._device = device
        self._process = psutil.Process()
        self._kernel = _reset_kernel_peak_rss()
        self._sampled_bytes = self._process.memory_info().rss
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def sample(self) -> None:
        """Take an RSS sample (only where the kernel's peak could not be reset)."""
        if not self._kernel:
            self._sampled_bytes = max(self._sampled_bytes, self._process.memory_info().rss)

    def metrics(self) -> dict[str, float]:
        self.sample()
        peak = _kernel_peak_rss_bytes() if self._kernel else None
        out = {"peak_rss_mb": round((peak or self._sampled_bytes) / 2**20, 1)}
        if self._device.type == "cuda":
            out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(self._device) / 2**20, 1)
        return out
