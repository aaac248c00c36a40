"""Data-parallel trials on real local Ray: the Tune trial runs a Ray Train `TorchTrainer` of 2 gloo
workers, which train exactly like one process with twice the batch, and resume exactly.

One sweep of one trial (2 workers x batch 4, lr high so weights move): after its step-4 report
reached Tune (the workers wait for Tune's answer there) one Ray Train worker process is
SIGKILLed, so the Train run and with it the trial fail, and Tune restarts the trial from the
step-4 checkpoint. Everything it reported and saved must match an uninterrupted single-process run
with batch 8, same seed and data order. 45 training examples make the epoch's last global batch
uneven (3 + 2 examples), and 8 steps cross into the second epoch.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from ledger import read_ledger  # noqa: E402
from ray import cloudpickle  # what Tune pickles trainables with
from sweep_helpers import lm_config

import trainables
from orchestrator import launch
from orchestrator.run.preflight import build_plan
from trainables.checkpointing import ADAPTER_DIR
from trainables.evaluation import evaluate
from trainables.loop import fit

pytestmark = pytest.mark.integration
STEPS, EVAL_EVERY = 8, 4


def _kill_one_train_worker() -> int:
    """SIGKILL one of this node's Ray Train workers (siblings under our own raylet); returns
    how many there were."""
    workers = [p for p in psutil.Process().parent().children()
               if " ".join(p.cmdline()).startswith("ray::RayTrainWorker")]
    os.kill(max(p.pid for p in workers), signal.SIGKILL)
    return len(workers)


def _worker_killed_once(markers: Path) -> Any:
    def trainable(config: dict, *, spec: dict, data: Any, pad_id: int) -> None:
        from ray import tune

        from trainables.tune_entry import run_trial

        attempts = markers / "attempts"
        attempt = int(attempts.read_text()) + 1 if attempts.exists() else 1
        attempts.write_text(str(attempt))
        real_report = tune.report

        def report(metrics: dict, checkpoint: Any = None) -> None:
            real_report(metrics, checkpoint=checkpoint)
            if attempt == 1 and metrics.get("step") == EVAL_EVERY:
                (markers / "workers").write_text(str(_kill_one_train_worker()))

        tune.report = report
        try:
            run_trial(config, spec=spec, data=data, pad_id=pad_id)
        finally:
            tune.report = real_report

    return trainable


def _config(encoder: Path, files: dict[str, str], storage: Path) -> dict:
    return {
        "task": "sequence_classification", "name": "dp", "storage_path": str(storage),
        "model": {"path": str(encoder)},
        "data": {"train": files["train"], "validation": files["validation"],
                 "text_column": "sentence", "max_length": 32, "max_train_examples": 45},
        # No dropout: ranks draw different masks than one process would, by design.
        "train": {"batch_size": 4, "eval_batch_size": 16, "max_steps": STEPS,
                  "eval_every_steps": EVAL_EVERY, "seed": 3, "dropout": 0.0,
                  "learning_rate": 2e-2, "lr_schedule": "constant"},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "search": {"algorithm": "random"}, "scheduler": {"type": "fifo"}, "num_samples": 1,
        "resources": {"workers_per_trial": 2, "cpus_per_trial": 1},
        "max_retries": 1, "baseline": False, "keep_checkpoints_per_trial": 3,
    }


@pytest.fixture(scope="module")
def dp_sweep(local_ray, tiny_encoder_dir: Path, sentiment_files: dict[str, str],
             tmp_path_factory: pytest.TempPathFactory):
    markers = tmp_path_factory.mktemp("markers")
    config = _config(tiny_encoder_dir, sentiment_files, tmp_path_factory.mktemp("dp"))
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    original = trainables.TRAINABLES["sequence_classification"]
    trainables.TRAINABLES["sequence_classification"] = _worker_killed_once(markers)
    try:
        result = launch(config, live=False)
    finally:
        trainables.TRAINABLES["sequence_classification"] = original
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    return result, markers


@pytest.fixture(scope="module")
def single_process_reference(dp_sweep) -> dict[int, tuple[dict[str, float], dict]]:
    """One process, batch 8 = 2 x 4, no interruption: step -> (metrics, adapter tensors)."""
    from safetensors.torch import load_file

    result, _ = dp_sweep
    plan = build_plan(result.config)
    spec = plan.spec.model_copy(update={
        "workers": 1, "train": plan.spec.train.model_copy(update={"batch_size": 8})})
    reports: dict[int, tuple[dict[str, float], dict]] = {}

    def capture(metrics: dict[str, float], folder: Path) -> None:
        adapter = load_file(str(folder / ADAPTER_DIR / "adapter_model.safetensors"))
        reports[int(metrics["step"])] = (dict(metrics), adapter)

    fit(spec, plan.data, plan.pad_id, capture)
    return reports


def _trial_dir(result: Any) -> Path:
    return next(p for p in Path(result.experiment_path).iterdir() if (p / "result.json").exists())


def _rows(result: Any) -> list[dict]:
    return [json.loads(x) for x in (_trial_dir(result) / "result.json").read_text().splitlines()]


def _checkpoint_at(result: Any, step: int) -> Path:
    return next(c for c in _trial_dir(result).glob("checkpoint_*")
                if json.loads((c / "metrics.json").read_text())["step"] == step)


def test_worker_loss_failed_the_trial_and_it_resumed_from_its_checkpoint(dp_sweep) -> None:
    result, markers = dp_sweep
    assert int((markers / "workers").read_text()) == 2  # one of the 2 was killed
    assert int((markers / "attempts").read_text()) == 2
    (record,) = read_ledger(Path(result.experiment_path)).values()
    assert record.restored_at == [2 * EVAL_EVERY]  # restarted from the step-4 checkpoint
    assert record.steps[-1] == STEPS
    assert (result.trials["status"] == "TERMINATED").all()


def test_trial_ran_with_two_workers(dp_sweep) -> None:
    result, _ = dp_sweep
    rows = _rows(result)
    assert rows and all(r["world_size"] == 2 for r in rows)
    for step in (EVAL_EVERY, STEPS):
        saved = json.loads((_checkpoint_at(result, step) / "metrics.json").read_text())
        assert saved["world_size"] == 2


def test_dp_matches_one_process_with_the_global_batch(dp_sweep, single_process_reference) -> None:
    from safetensors.torch import load_file

    result, _ = dp_sweep
    # Tune rewrites result.json on restore; each checkpoint keeps the metrics reported with it.
    reported = {step: json.loads((_checkpoint_at(result, step) / "metrics.json").read_text())
                for step in (EVAL_EVERY, STEPS)}
    assert sorted(single_process_reference) == [EVAL_EVERY, STEPS]
    for step, (metrics, _) in single_process_reference.items():
        for name in ("eval_loss", "eval_accuracy", "train_loss", "tokens_seen", "epoch"):
            assert reported[step][name] == pytest.approx(metrics[name], abs=1e-5), (step, name)
    final = load_file(str(_checkpoint_at(result, STEPS) / ADAPTER_DIR /
                          "adapter_model.safetensors"))
    first_adapter = single_process_reference[EVAL_EVERY][1]
    last_adapter = single_process_reference[STEPS][1]
    assert final.keys() == last_adapter.keys()
    moved = max(float((last_adapter[k] - first_adapter[k]).abs().max()) for k in final)
    assert moved > 1e-2  # training changed the weights, so matching them means something
    for key, tensor in final.items():
        torch.testing.assert_close(tensor, last_adapter[key], atol=1e-5, rtol=0)


def test_checkpoint_is_adapter_only_and_loads(dp_sweep) -> None:
    from orchestrator.experiment.checkpoints import load_checkpoint_model

    result, _ = dp_sweep
    ckpt = _checkpoint_at(result, STEPS)
    files = {p.name for p in ckpt.rglob("*") if p.is_file()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    model, _ = load_checkpoint_model(result.config, ckpt)
    plan = build_plan(result.config)
    metrics = evaluate(model, plan.data.validation, task="sequence_classification",
                       batch_size=16, pad_id=plan.pad_id, device=model.device,
                       num_labels=plan.data.num_labels)
    saved = json.loads((ckpt / "metrics.json").read_text())
    assert metrics["eval_loss"] == pytest.approx(saved["eval_loss"], rel=1e-5)


def test_best_counts_reports_result_json_lost_on_restore(dp_sweep) -> None:
    """Every checkpointed report counts for the sweep's best, also the one whose result.json row
    Tune dropped when it restored the file for the retry."""
    result, _ = dp_sweep
    saved = [json.loads((_checkpoint_at(result, step) / "metrics.json").read_text())["eval_loss"]
             for step in (EVAL_EVERY, STEPS)]
    in_rows = [r["eval_loss"] for r in _rows(result)]
    assert result.best_value == pytest.approx(min(saved + in_rows), abs=1e-9)
    assert result.best_metrics["eval_loss"] == pytest.approx(result.best_value, abs=1e-9)


FSDP_STEPS = 4


@pytest.fixture(scope="module")
def fsdp_sweep(local_ray, tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Two FSDP trials of full fine-tuning, one at a time (the 2-CPU cluster places one pair of
    workers): a learning rate that learns, then one that does not, which ASHA stops at its
    first rung (step 2), so its Train run ends on Tune's stop."""
    config = lm_config(tiny_lm_dir, name="fsdp", storage_path=str(tmp_path_factory.mktemp("f")),
                       baseline=False, num_samples=1, max_retries=0)
    config["data"] = {**config["data"], "max_train_examples": 40, "max_eval_examples": 16}
    config["train"] = {"batch_size": 4, "max_steps": FSDP_STEPS, "eval_every_steps": 2,
                       "seed": 0, "finetune": "full", "lr_schedule": "constant"}
    config["search_space"] = {"train.learning_rate": {"type": "grid", "values": [1e-2, 1e-9]}}
    config["search"] = {"algorithm": "grid"}
    config["scheduler"] = {"type": "asha", "grace_period": 2, "reduction_factor": 2,
                           "max_t": FSDP_STEPS}
    config["resources"] = {"workers_per_trial": 2, "cpus_per_trial": 1, "strategy": "fsdp"}
    return launch(config, live=False)


def test_fsdp_trials_run_on_two_workers_and_asha_stops_one(fsdp_sweep) -> None:
    (learns, stalls) = sorted(read_ledger(Path(fsdp_sweep.experiment_path)).values(),
                              key=lambda r: -r.config["train"]["learning_rate"])
    assert learns.steps == [2, FSDP_STEPS]
    assert stalls.steps == [2]  # stopped at the rung, its workers told to stop there
    assert (fsdp_sweep.trials["status"] == "TERMINATED").all()
    for trial_dir in Path(fsdp_sweep.experiment_path).glob("*/result.json"):
        rows = [json.loads(x) for x in trial_dir.read_text().splitlines()]
        assert all(r["world_size"] == 2 for r in rows)
        # Ray Train's staged copies are gone once Tune holds the checkpoints.
        assert not (trial_dir.parent / "train_staging").exists()


def test_fsdp_checkpoint_holds_the_full_model_and_loads(fsdp_sweep) -> None:
    from orchestrator.experiment.checkpoints import load_checkpoint_model

    ckpt = Path(str(fsdp_sweep.best_checkpoint))
    saved = json.loads((ckpt / "metrics.json").read_text())
    assert saved["step"] == FSDP_STEPS and (ckpt / "model" / "model.safetensors").exists()
    model, _ = load_checkpoint_model(fsdp_sweep.config, ckpt)  # plain transformers, as export
    plan = build_plan(fsdp_sweep.config)
    metrics = evaluate(model, plan.data.validation, task="causal_lm", batch_size=4,
                       pad_id=plan.pad_id, device=model.device, num_labels=None)
    assert metrics["eval_loss"] == pytest.approx(saved["eval_loss"], rel=1e-5)
