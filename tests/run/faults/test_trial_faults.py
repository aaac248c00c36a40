"""Trial-level faults on real local Ray, one sweep with a role per trial (see chaos.PLAN).

After the sweep an independent ledger (Tune's raw result files) must show: every trial once,
failed trials resumed from their checkpoint (no step re-run from scratch), the OOM trial
recorded as infeasible and not retried, the NaN trial as diverged, the torn checkpoint skipped
for the previous intact one, and only the experiment-wide top-k keeping checkpoints.
"""

from __future__ import annotations

import math
from pathlib import Path

import chaos
import cloudpickle
import pytest
from ledger import read_ledger
from sweep_helpers import lm_config

import trainables
from orchestrator import launch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chaotic_sweep(local_ray, tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    markers = tmp_path_factory.mktemp("markers")
    storage = tmp_path_factory.mktemp("faults")
    cloudpickle.register_pickle_by_value(chaos)
    original = trainables.TRAINABLES["causal_lm"]
    trainables.TRAINABLES["causal_lm"] = chaos.make_chaotic(markers, storage / "chaos")
    try:
        result = launch(lm_config(
            tiny_lm_dir, name="chaos", storage_path=str(storage),
            train={"batch_size": 8, "max_steps": 20, "eval_every_steps": 5, "seed": 0,
                   "learning_rate": 1e-2},
            search_space={"train.weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1}},
            search={"algorithm": "random", "seed": 0, "max_concurrent_trials": 2},
            scheduler={"type": "fifo"}, num_samples=7, max_retries=2,
            keep_checkpoints_per_trial=3, keep_top_k_trials=2, baseline=False,
        ), live=False)
    finally:
        trainables.TRAINABLES["causal_lm"] = original
        cloudpickle.unregister_pickle_by_value(chaos)
    by_index = {}
    for record in read_ledger(Path(result.experiment_path)).values():
        name = next(p.name for p in Path(result.experiment_path).iterdir()
                    if record.trial_id in p.name)
        by_index[int(name.split("_")[3])] = record
    attempts = {int(p.name.split(".")[0].rsplit("_", 1)[-1]): int(p.read_text())
                for p in markers.glob("*.attempts")}
    return result, by_index, attempts


def test_every_trial_once_and_sweep_finished(chaotic_sweep) -> None:
    result, by_index, _ = chaotic_sweep
    assert sorted(by_index) == list(range(7))
    assert (result.trials["status"] == "TERMINATED").all(), result.trials


@pytest.mark.parametrize("index", [0, 1], ids=["exception", "process-killed"])
def test_failed_trial_resumes_from_its_checkpoint(chaotic_sweep, index: int) -> None:
    _, by_index, attempts = chaotic_sweep
    assert attempts[index] == 2
    assert by_index[index].restored_at == [15]  # resumed from step 10: next report is 15
    assert by_index[index].steps[-1] == 20


def test_oom_trial_is_infeasible_and_not_retried(chaotic_sweep) -> None:
    result, by_index, attempts = chaotic_sweep
    assert attempts[2] == 1
    row = result.trials.set_index("trial_id").loc[by_index[2].trial_id]
    assert row["infeasible"] and row["status"] == "TERMINATED"
    assert by_index[2].values == [math.inf]  # the searcher was told: as bad as it gets


def test_nan_trial_is_diverged(chaotic_sweep) -> None:
    result, by_index, attempts = chaotic_sweep
    assert attempts[3] == 1
    assert result.trials.set_index("trial_id").loc[by_index[3].trial_id]["diverged"]


def test_torn_checkpoint_is_skipped_for_the_previous_one(chaotic_sweep) -> None:
    _, by_index, attempts = chaotic_sweep
    # Reported 15, crashed with checkpoint 15 torn. Loading the torn one would fail every
    # retry; instead the second attempt resumed from step 10 and finished.
    assert attempts[4] == 2
    assert by_index[4].restored_at == [15]
    assert by_index[4].steps[-1] == 20


def test_only_the_experiment_top_k_keep_checkpoints(chaotic_sweep) -> None:
    result, by_index, _ = chaotic_sweep
    with_checkpoints = {r.trial_id for r in by_index.values() if r.checkpoints}
    best_two = set(result.trials.dropna(subset=["best_eval_loss"]).nsmallest(
        2, "best_eval_loss")["trial_id"])
    assert with_checkpoints == best_two
    assert result.best_trial_id in with_checkpoints
    model, _ = result.load_best_model()
    assert model is not None
