"""A real sweep on real local Ray with a tiny model: ASHA + hyperopt, end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sweep_helpers import lm_config

from orchestrator import launch, load_results
from orchestrator.experiment.errors import ExperimentExistsError
from trainables.checkpointing import ADAPTER_DIR

pytestmark = pytest.mark.integration


def _all_reported(experiment: Path, metric: str) -> dict[str, list[float]]:
    """Every value each trial reported, read from Tune's raw result logs (independent of the
    orchestrator's own results code)."""
    values: dict[str, list[float]] = {}
    for result_file in experiment.glob("*/result.json"):
        for line in result_file.read_text().splitlines():
            row = json.loads(line)
            values.setdefault(row["trial_id"], []).append(row[metric])
    return values


@pytest.fixture(scope="module")
def sweep(local_ray, tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    storage = tmp_path_factory.mktemp("results")
    config = lm_config(
        tiny_lm_dir,
        name="asha-hyperopt",
        storage_path=str(storage),
        train={"batch_size": 8, "max_steps": 30, "eval_every_steps": 5, "seed": 0},
        # lr spans 3 decades: the low end barely moves the loss, so ASHA has trials to stop.
        search_space={
            "train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 3e-2},
            "lora.r": {"type": "choice", "values": [2, 4]},
        },
        search={"algorithm": "hyperopt", "seed": 1, "max_concurrent_trials": 2},
        scheduler={"type": "asha", "grace_period": 5, "reduction_factor": 2},
        num_samples=8,
        keep_checkpoints_per_trial=1,
    )
    return launch(config, live=False)


def test_asha_stopped_trials_early(sweep) -> None:
    trials = sweep.trials
    assert len(trials) == 8
    assert (trials["status"] == "TERMINATED").all()
    stopped = trials[trials["stopped_early"]]
    assert len(stopped) >= 2, trials[["trial_id", "last_step", "total_steps"]]
    assert (stopped["last_step"] < 30).all()
    assert (trials["last_step"] == 30).any()  # and let the best run to the end


def test_reported_best_is_best_of_all_reports(sweep) -> None:
    reported = _all_reported(Path(sweep.experiment_path), "eval_loss")
    assert len(reported) == 8
    best_everywhere = min(v for values in reported.values() for v in values)
    assert sweep.best_value == pytest.approx(best_everywhere, abs=0, rel=0)
    assert sweep.best_value == min(reported[sweep.best_trial_id])
    assert sweep.baseline_value is not None and sweep.best_value < sweep.baseline_value


def test_best_checkpoint_is_adapter_only_and_loads_back(sweep, tiny_lm_dir: Path) -> None:
    ckpt = Path(sweep.best_checkpoint)
    files = {p.name for p in ckpt.rglob("*") if p.is_file()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    assert json.loads((ckpt / "metrics.json").read_text())["eval_loss"] == sweep.best_value

    model, tokenizer = sweep.load_best_model()
    assert type(model).__name__.startswith("PeftModel")
    # The loaded model reproduces the metric the trial reported for this checkpoint.
    from orchestrator.run.preflight import build_plan
    from trainables.evaluation import evaluate

    plan = build_plan(sweep.config)
    metrics = evaluate(model, plan.data.validation, task="causal_lm", batch_size=8,
                       pad_id=plan.pad_id, device=model.device)
    assert metrics["eval_loss"] == pytest.approx(sweep.best_value, rel=1e-5)
    adapter_bytes = (ckpt / ADAPTER_DIR / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < (tiny_lm_dir / "model.safetensors").stat().st_size


def test_results_reread_from_disk_match(sweep) -> None:
    again = load_results(sweep.experiment_path)
    assert again.best_trial_id == sweep.best_trial_id
    assert again.best_checkpoint == sweep.best_checkpoint
    assert math.isclose(again.best_value, sweep.best_value)
    assert set(again.trials.columns) >= {"train.learning_rate", "lora.r", "best_eval_loss"}


def test_same_experiment_name_is_refused(sweep, local_ray) -> None:
    config = sweep.config.model_dump()
    with pytest.raises(ExperimentExistsError, match="already exists"):
        launch(config, live=False)
