"""CPU smoke tests: each trainable fine-tunes a tiny model end to end, without Ray."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from sweep_helpers import ROOT, lm_config

from orchestrator.config.loading import load_config
from orchestrator.run.preflight import build_plan
from trainables.checkpointing import ADAPTER_DIR, SPEC_FILE, STATE_FILE
from trainables.config import merge_trial_config
from trainables.loop import fit


def _plan(config: dict):
    cfg = load_config(config)
    cfg.base_dir = str(ROOT)
    return build_plan(cfg)


def _run(plan, tmp_path: Path, resume_from: Path | None = None, **train: object):
    spec = merge_trial_config(plan.spec, {"train": train})
    reports: list[dict] = []

    def report(metrics: dict, folder: Path) -> None:
        keep = tmp_path / f"step-{metrics['step']}"
        shutil.copytree(folder, keep, dirs_exist_ok=True)
        reports.append({**metrics, "checkpoint": keep})

    torch.set_num_threads(1)
    fit(spec, plan.data, plan.pad_id, report, resume_from=resume_from)
    return reports


def test_causal_lm_lora_smoke(tiny_lm_dir: Path, tmp_path: Path) -> None:
    plan = _plan(lm_config(tiny_lm_dir))
    reports = _run(plan, tmp_path, learning_rate=1e-2)
    assert [r["step"] for r in reports] == [5, 10, 15, 20]
    for r in reports:
        assert {"eval_loss", "eval_perplexity", "eval_token_accuracy", "train_loss",
                "tokens_seen", "tokens_per_s"} <= r.keys()
        assert math.isclose(r["eval_perplexity"], math.exp(r["eval_loss"]), rel_tol=1e-6)
        # How noisy each evaluation is, for the fit flags: examples scored, loss's std. error.
        assert r["eval_examples"] == len(plan.data.validation)
        assert 0 < r["eval_loss_se"] < r["eval_loss"]
    assert reports[-1]["eval_loss"] < reports[0]["eval_loss"]  # it learns
    assert reports[-1]["tokens_seen"] > reports[0]["tokens_seen"] > 0
    ckpt = reports[-1]["checkpoint"]
    files = {p.name for p in ckpt.rglob("*") if p.is_file()}
    assert {"adapter_model.safetensors", "adapter_config.json", STATE_FILE, SPEC_FILE} <= files
    assert "model.safetensors" not in files  # adapter only, never the base weights
    base_bytes = (tiny_lm_dir / "model.safetensors").stat().st_size
    adapter_bytes = (ckpt / ADAPTER_DIR / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < base_bytes


def test_causal_lm_full_finetune_smoke(tiny_lm_dir: Path, tmp_path: Path) -> None:
    plan = _plan(lm_config(tiny_lm_dir))
    reports = _run(plan, tmp_path, learning_rate=3e-3, finetune="full", max_steps=10)
    assert [r["step"] for r in reports] == [5, 10]
    assert reports[-1]["eval_loss"] < reports[0]["eval_loss"]  # every weight trains: it learns
    assert (reports[-1]["checkpoint"] / "model" / "model.safetensors").exists()


def test_sequence_classification_smoke(
    tiny_encoder_dir: Path, sentiment_files: dict, tmp_path: Path
) -> None:
    config = lm_config(
        tiny_encoder_dir,
        task="sequence_classification",
        data={"train": sentiment_files["train"], "validation": sentiment_files["validation"],
              "text_column": "sentence", "max_length": 32},
        metric="eval_f1",
        lora={"r": 4, "target_modules": ["query", "value"]},
    )
    plan = _plan(config)
    assert plan.data.num_labels == 3
    reports = _run(plan, tmp_path, learning_rate=1e-2, max_steps=60, eval_every_steps=20)
    assert [r["step"] for r in reports] == [20, 40, 60]
    last = reports[-1]
    assert {"eval_loss", "eval_accuracy", "eval_f1"} <= last.keys()
    assert 0.0 <= last["eval_f1"] <= 1.0
    assert last["eval_examples"] == len(plan.data.validation) and last["eval_loss_se"] > 0
    assert last["eval_accuracy"] > 1 / 3  # better than chance on a learnable toy task
    spec = json.loads((last["checkpoint"] / SPEC_FILE).read_text())
    assert spec["num_labels"] == 3


def test_resume_continues_at_saved_step_with_same_loss(tiny_lm_dir: Path, tmp_path: Path) -> None:
    """Stop after step 10, resume from that checkpoint: steps 15 and 20 match an uninterrupted
    run exactly (same data order, optimizer state, LR schedule and dropout RNG)."""
    plan = _plan(lm_config(tiny_lm_dir, lora={"r": 4, "dropout": 0.1}))
    full = _run(plan, tmp_path / "full", learning_rate=1e-2)
    resumed = _run(plan, tmp_path / "resumed", resume_from=full[1]["checkpoint"],
                   learning_rate=1e-2)
    assert full[1]["step"] == 10
    assert [r["step"] for r in resumed] == [15, 20]
    for a, b in zip(full[2:], resumed, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a["eval_loss"] == pytest.approx(b["eval_loss"], abs=1e-6)
        assert a["tokens_seen"] == b["tokens_seen"]


def test_diverging_loss_raises(tiny_lm_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A NaN loss ends the trial with DivergedError (the Tune glue reports it as diverged)."""
    from trainables import loop, modeling
    from trainables.loop import DivergedError

    real_apply = modeling.apply_lora

    def apply_and_poison(model, lora, task):
        wrapped = real_apply(model, lora, task)

        def nan_loss(module, args, kwargs, output):
            output["loss"] = output["loss"] * float("nan")
            return output

        wrapped.register_forward_hook(nan_loss, with_kwargs=True)
        return wrapped

    monkeypatch.setattr(loop.modeling, "apply_lora", apply_and_poison)
    plan = _plan(lm_config(tiny_lm_dir))
    with pytest.raises(DivergedError, match="diverged"):
        _run(plan, tmp_path, learning_rate=1e-3)


def test_bf16_and_gradient_checkpointing_on_cpu(tiny_lm_dir: Path, tmp_path: Path) -> None:
    plan = _plan(lm_config(tiny_lm_dir))
    reports = _run(plan, tmp_path, learning_rate=1e-2, precision="bf16",
                   gradient_checkpointing=True, max_steps=10)
    assert [r["step"] for r in reports] == [5, 10]
    assert all(math.isfinite(r["eval_loss"]) for r in reports)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_data(tiny_lm_dir: Path, tmp_path: Path, fmt: str) -> None:
    import pandas as pd
    from sweep_helpers import DATES

    paths = {}
    for split in ("train", "validation"):
        frame = pd.read_json(DATES / f"{split}.jsonl", lines=True, dtype=False)
        paths[split] = tmp_path / f"{split}.{fmt}"
        frame.to_csv(paths[split], index=False) if fmt == "csv" else frame.to_parquet(
            paths[split])
    config = lm_config(tiny_lm_dir)
    config["data"].update(train=str(paths["train"]), validation=str(paths["validation"]))
    plan = _plan(config)
    assert plan.data.summary()["validation_examples"] == 64
    assert len(plan.data.train) == 400  # max_train_examples
