"""benchmarks/common.py helpers (no Ray)."""

from __future__ import annotations

import sys

import pytest
from sweep_helpers import ROOT

if str(ROOT) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.common import LoadSampler  # noqa: E402


@pytest.mark.parametrize("samples", [[4.60400390625] * 3, [0.0049, 0.0051], [1.234, 9.876, 5.5]])
def test_load_summary_keeps_min_mean_max_in_order(samples: list[float]) -> None:
    """The kernel's load averages carry more digits than two; a summary that rounded only the
    mean put it below the minimum when every sample was the same (seen: 4.6 < 4.604)."""
    sampler = LoadSampler()
    sampler.samples = list(samples)
    load = sampler.summary()
    assert load["loadavg_1m_min"] <= load["loadavg_1m_mean"] <= load["loadavg_1m_max"]
    assert load["samples"] == len(samples)
