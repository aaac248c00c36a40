"""PBT on real local Ray: bottom trials copy a top trial's checkpoint and perturb their
searched values, then continue from the donor's step."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
from sweep_helpers import lm_config

from orchestrator import launch

pytestmark = pytest.mark.integration


def test_pbt_exploits_and_explores(local_ray, tiny_lm_dir: Path, tmp_path: Path) -> None:
    result = launch(lm_config(
        tiny_lm_dir, name="pbt", storage_path=str(tmp_path),
        train={"batch_size": 8, "max_steps": 20, "eval_every_steps": 5, "seed": 0},
        search_space={"train.learning_rate": {"type": "loguniform", "low": 1e-5,
                                              "high": 3e-2}},
        search={"algorithm": "random", "seed": 2, "max_concurrent_trials": 4},
        scheduler={"type": "pbt", "perturbation_interval": 10, "quantile_fraction": 0.5,
                   "resample_probability": 0.0, "synchronous": True},
        num_samples=4, baseline=False, keep_top_k_trials=None,
    ), live=False)
    experiment = Path(result.experiment_path)
    changes = []  # (step, old lr, new lr) where a trial took on a perturbed donor config
    for result_file in experiment.glob("*/result.json"):
        rows = [json.loads(line) for line in result_file.read_text().splitlines()]
        lrs = [(r["step"], r["config"]["train"]["learning_rate"]) for r in rows]
        changes += [(step, old, new) for (_, old), (step, new) in pairwise(lrs)
                    if new != old]
        assert rows[-1]["step"] == 20  # every trial trained to the end
    assert changes, "no trial exploited a donor"
    # The exploiting trial continued from the donor's step, not from scratch.
    assert all(step > 5 for step, _, _ in changes)
    assert (result.trials["status"] == "TERMINATED").all()
