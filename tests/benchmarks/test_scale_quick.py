"""`benchmarks/scale.py --quick`: a 20-trial sweep through `launch()` on the 2-node loopback
cluster, its driver profiled; the figures are timings on a shared machine, so their shape is
checked, not their values (the 500-trial run: benchmarks/README.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sweep_helpers import ROOT

if str(ROOT) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))

pytestmark = pytest.mark.integration


def test_scale_quick(tmp_path: Path) -> None:
    from benchmarks import scale

    out = tmp_path / "scale.json"
    scale.main(["--quick", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["benchmark"] == "scale" and result["quick"] is True
    assert result["command"].startswith("python -m benchmarks.scale --quick")
    assert result["load"]["samples"] >= 2 and result["concurrency"] == 2
    (run,) = result["runs"]
    assert run["trials"] == 20 and run["status_counts"] == {"TERMINATED": 20}
    assert run["trial_failures"] == 0
    assert run["stamped_trials"] == 20 and run["unstamped"] == []
    assert run["ratio"] > 1.0 and run["ratio_work"] >= run["ratio"]  # a sweep has overheads
    assert 0 < run["driver_cpu_s_per_trial"] < run["fit_wall_s"]
    sizes = run["storage_bytes"]
    assert sizes["experiment_state"] > 0 and sizes["trial_files"] > 0
    assert sizes["trial_folders"] == 20 and sizes["total"] == sum(
        sizes[k] for k in ("experiment_state", "searcher_state", "tuner_pkl", "product_files",
                           "trial_files", "checkpoints"))
    assert run["hot_spots_tottime"] and all(r["calls"] > 0 for r in run["hot_spots_tottime"])
    assert result["target"]["target"] == scale.TARGET and result["judged_at_trials"] == 20
