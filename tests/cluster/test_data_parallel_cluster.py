"""A data-parallel trial across both nodes of the loopback cluster: STRICT_SPREAD puts one Ray
Train worker on each 1-CPU node (the trial's own process and the Train controller hold no CPU),
so the trial can only finish if the two workers train together over gloo on the loopback
interface, and rank 0's checkpoints reach the trial through the shared storage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster.local import LocalCluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_strict_spread_trial_trains_across_two_nodes(
    tiny_encoder_dir: Path, sentiment_files: dict[str, str], tmp_path: Path
) -> None:
    storage = tmp_path / "out"
    config = {
        "task": "sequence_classification", "name": "dp-spread", "storage_path": str(storage),
        "model": {"path": str(tiny_encoder_dir)},
        "data": {"train": sentiment_files["train"], "validation": sentiment_files["validation"],
                 "text_column": "sentence", "max_length": 32},
        "train": {"batch_size": 4, "max_steps": 4, "eval_every_steps": 2, "seed": 0},
        "lora": {"r": 4, "alpha": 8},
        "search": {"algorithm": "random"}, "scheduler": {"type": "fifo"}, "num_samples": 1,
        "resources": {"workers_per_trial": 2, "cpus_per_trial": 1,
                      "placement_strategy": "STRICT_SPREAD"},
        "baseline": False, "max_retries": 0,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    with LocalCluster(workers=1, cpus_per_node=1) as cluster:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
               **cluster.env}
        run = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--address",
             cluster.address], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    (result_file,) = (storage / "dp-spread").glob("*/result.json")
    rows = [json.loads(line) for line in result_file.read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert all(r["world_size"] == 2 for r in rows)
