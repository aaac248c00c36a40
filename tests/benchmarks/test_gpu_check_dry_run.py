"""`benchmarks/gpu_check.py --dry-run`: every part of the GPU check runs on CPU with tiny models
and the result file says what the dry run simulated (the GPU run itself needs a lent GPU:
`bash benchmarks/gpu_check.sh`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import ROOT

if str(ROOT) not in sys.path:  # `benchmarks` is a top-level folder, not an installed package
    sys.path.insert(0, str(ROOT))

pytestmark = pytest.mark.integration


def test_gpu_check_dry_run(local_ray: Any, tmp_path: Path) -> None:
    from benchmarks import gpu_check

    out = tmp_path / "gpu_check.json"
    gpu_check.main(["--dry-run", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["benchmark"] == "gpu_check" and result["dry_run"] is True
    assert result["command"].startswith("python -m benchmarks.gpu_check --dry-run")
    assert result["machine"]["cpu_count"] >= 1 and result["load"]["samples"] >= 2
    assert set(result["simulates"]) >= {"b_fractional", "d_oom", "e_ray_train"}
    parts = result["parts"]
    assert set(parts) == set(gpu_check.PARTS)
    failed = {name: part.get("error") or part.get("skipped") for name, part in parts.items()
              if "error" in part or "skipped" in part}
    assert not failed, failed

    lora = parts["a_lora_trial"]
    assert lora["tokens_per_s"] > 0 and lora["peak_rss_mb"] > 50 and lora["steps"] == 3

    fractional = parts["b_fractional"]
    assert [len(fractional["runs"][k]["trials"]) for k in ("whole", "quarters")] == [1, 4]
    sums = {k: sum(t["tokens_per_s"] for t in fractional["runs"][k]["trials"])
            for k in ("whole", "quarters")}
    assert fractional["ratio"] == pytest.approx(sums["quarters"] / sums["whole"])
    assert fractional["ratio"] > 0
    assert fractional["goal"]["met"] is (fractional["ratio"] >= gpu_check.FRACTIONAL_GOAL)

    variants = {(v["finetune"], v["gradient_checkpointing"]): v
                for v in parts["c_llama_1b"]["variants"]}
    assert set(variants) == {(f, gc) for f in ("lora", "full") for gc in (False, True)}
    assert variants["full", False]["trainable_params"] > 3 * variants["lora", False][
        "trainable_params"]
    assert all(v["tokens_per_s"] > 0 and v["peak_rss_mb"] > 0 for v in variants.values())

    oom = parts["d_oom"]
    assert oom["simulated"] is True
    assert oom["oom_ended_infeasible"] and oom["oom_not_retried"] and oom["next_trial_ran"]
    infeasible = [t for t in oom["trials"] if t["infeasible"]]
    assert len(infeasible) == 1 and "OutOfMemoryError" in infeasible[0]["error"]

    train = parts["e_ray_train"]
    assert train["backend"] == "gloo" and train["world_size"] == 1
    assert train["all_reduce"] == 1.0 and train["tokens_per_s"] > 0
