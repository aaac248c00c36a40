"""A trial's peak memory (`peak_rss_mb`) and what a finished trial leaves behind in its process.

The reused-process check on real Ray (5 trials in one process) is in
`tests/run/test_reused_process_memory.py`.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch

from trainables import runtime
from trainables.runtime import PeakMemory, release_memory, watch_for_release

MB = 2**20


def _touch(megabytes: int) -> np.ndarray:
    return np.ones(megabytes * MB // 8)  # written, so resident


@pytest.mark.parametrize("kernel_reset", [True, False], ids=["kernel-hwm", "sampled"])
def test_peak_counts_this_trial_only(kernel_reset: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if kernel_reset and not runtime._reset_kernel_peak_rss():
        pytest.skip("this kernel refuses to reset the peak RSS (/proc/self/clear_refs)")
    if not kernel_reset:
        monkeypatch.setattr(runtime, "_reset_kernel_peak_rss", lambda: False)
    before = _touch(400)  # an earlier trial's peak in this process: must not count
    earlier_peak = psutil.Process().memory_info().rss / MB
    del before
    memory = PeakMemory(torch.device("cpu"))
    start = memory.metrics()["peak_rss_mb"]
    assert start < earlier_peak - 300
    block = _touch(200)
    memory.sample()  # what the loop does at every optimizer step
    del block
    peak = memory.metrics()["peak_rss_mb"]
    # the 200 MB block is gone, and still counted; the 400 MB one before the start is not
    assert start + 150 < peak < start + 350


def test_release_collects_a_model_held_by_a_cycle() -> None:
    model = torch.nn.Linear(256, 256)
    model.me = [model]  # a reference cycle: reference counting alone never frees it
    alive = weakref.ref(model)
    watch_for_release(model)
    gc.disable()  # the cycle must not be collected by chance before release_memory runs
    try:
        del model
        assert alive() is not None
        release_memory()
        assert alive() is None
    finally:
        gc.enable()


def test_release_warns_about_a_model_kept_alive(caplog: pytest.LogCaptureFixture) -> None:
    kept = [torch.nn.Linear(4, 4)]  # e.g. a module-level cache
    watch_for_release(kept[0])
    with caplog.at_level("WARNING", logger="trainables.runtime"):
        release_memory()
    assert "still referenced after gc.collect()" in caplog.text
    kept.clear()
    release_memory()


@pytest.mark.parametrize("kernel_reset", [True, False], ids=["kernel-hwm", "sampled"])
def test_fit_reports_peak_memory(kernel_reset: bool, tiny_lm_dir: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A block allocated between two reports raises the second report's peak by its size, and
    the next trial in the same process starts from a peak below it."""
    from sweep_helpers import ROOT, lm_config

    from orchestrator.config.loading import load_config
    from orchestrator.run.preflight import build_plan
    from trainables.loop import fit

    if kernel_reset and not runtime._reset_kernel_peak_rss():
        pytest.skip("this kernel refuses to reset the peak RSS (/proc/self/clear_refs)")
    if not kernel_reset:  # the fallback: RSS sampled at each optimizer step and report
        monkeypatch.setattr(runtime, "_reset_kernel_peak_rss", lambda: False)
    cfg = load_config(lm_config(tiny_lm_dir))
    cfg.base_dir = str(ROOT)
    plan = build_plan(cfg)
    torch.set_num_threads(1)
    block_mb = 300
    held: list[np.ndarray] = []
    reports: list[dict[str, float]] = []

    def report(metrics: dict[str, float], folder: Path) -> None:
        reports.append(metrics)
        if len(reports) == 1:
            held.append(_touch(block_mb))  # alive during the steps up to the second report
        elif len(reports) == 2:
            held.clear()

    fit(plan.spec, plan.data, plan.pad_id, report)
    peaks = [r["peak_rss_mb"] for r in reports]
    assert len(peaks) == 4 and all(p > 50 for p in peaks)  # MiB; Python + torch alone is more
    assert peaks[1] >= peaks[0] + 0.9 * block_mb  # the block, freed since, still counts
    assert "peak_cuda_mb" not in reports[0]  # CPU trial
    assert len(runtime._trial_models) == 0  # nothing holds the model once fit has returned

    next_trial: list[dict[str, float]] = []
    fit(plan.spec, plan.data, plan.pad_id, lambda metrics, folder: next_trial.append(metrics))
    # the next trial's peak starts over: without the block, well below the first trial's
    assert max(r["peak_rss_mb"] for r in next_trial) < peaks[1] - 0.5 * block_mb
