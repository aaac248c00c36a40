"""Distillation end to end on a real local Ray: a teacher sweep, `sweep student` (a copy of
its best trial with one layer kept), a distillation sweep whose teacher is that experiment and
whose search space holds distill.alpha and distill.kl, and a causal-LM one with a folder
teacher. The teacher runs once per sweep; every trial trains on its targets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sweep_helpers import ONE_TRIAL, invoke, lm_config

from orchestrator import launch
from orchestrator.cli.post import register
from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config
from orchestrator.experiment.layout import DISTILL_FILE
from orchestrator.run.preflight import build_plan

pytestmark = pytest.mark.integration

def _cli(*args: str):
    return invoke(register, *args)


def _classifier(model: Path, files: dict, storage: Path, name: str, **extra: object) -> dict:
    config = lm_config(model, task="sequence_classification", name=name,
                       storage_path=str(storage), metric="eval_f1", **ONE_TRIAL)
    config["data"] = {"train": files["train"], "validation": files["validation"],
                      "text_column": "sentence", "max_length": 32}
    config["train"] = {"batch_size": 8, "max_steps": 12, "eval_every_steps": 6, "seed": 0,
                       "learning_rate": 3e-3, "finetune": "full"}
    config["search_space"] = {}
    config.update(extra)
    return config


@pytest.fixture(scope="module")
def teacher_sweep(local_ray, tiny_encoder_dir: Path, sentiment_files: dict,
                  tmp_path_factory: pytest.TempPathFactory):
    storage = tmp_path_factory.mktemp("distill")
    return launch(_classifier(tiny_encoder_dir, sentiment_files, storage, "teacher")), storage


def test_student_from_a_sweeps_best_trial_then_distilled_with_searched_alpha_and_kl(
        teacher_sweep, sentiment_files: dict, tmp_path: Path) -> None:
    teacher, storage = teacher_sweep
    out = _cli("student", teacher.experiment_path, "--layers", "1", "--out",
               str(tmp_path / "student"))
    assert out.exit_code == 0, out.output
    assert "layers [0] of 2" in out.output
    info = json.loads((tmp_path / "student" / "sweep_student.json").read_text())
    assert info["trial_id"] == teacher.best_trial_id and info["kept_layers"] == [0]
    assert info["student_parameters"] < info["parameters"]

    config = _classifier(tmp_path / "student", sentiment_files, storage, "distilled")
    config["distill"] = {"teacher": teacher.experiment_path, "temperature": 2.0}
    config["search_space"] = {"distill.alpha": {"type": "choice", "values": [0.2, 0.9]},
                              "distill.kl": {"type": "choice", "values": ["forward", "reverse"]}}
    config.update({"search": {"algorithm": "grid"}, "num_samples": 1})
    result = launch(config)
    ran = json.loads((Path(result.experiment_path) / DISTILL_FILE).read_text())
    assert ran["trial_id"] == teacher.best_trial_id
    assert ran["examples"] == 240 and ran["trials"] == 4 and ran["pass_s"] > 0
    trials = result.trials
    assert len(trials) == 4
    picked = sorted(zip(trials["distill.alpha"], trials["distill.kl"], strict=True))
    assert picked == [(0.2, "forward"), (0.2, "reverse"), (0.9, "forward"), (0.9, "reverse")]
    # Different alphas and directions train differently from the same start and data (the
    # student starts as half the teacher, so the KL is small and the two directions differ
    # little; the runs are deterministic, so an ignored `kl` would give equal losses).
    losses = {float(h["train_loss"].iloc[-1]) for h in result.histories.values()}
    assert len(losses) == 4

def test_a_teacher_with_other_classes_or_a_missing_teacher_is_refused_before_the_sweep(
        teacher_sweep, tiny_encoder_dir: Path, sentiment_files: dict, tmp_path: Path) -> None:
    _, storage = teacher_sweep
    config = _classifier(tiny_encoder_dir, sentiment_files, storage, "nope")
    config["distill"] = {"teacher": str(tmp_path / "no-such-teacher")}
    with pytest.raises(ConfigError, match=r"distill\.teacher: .*no-such-teacher.* does not load"):
        build_plan(load_config(config))
    config["distill"] = {"teacher": str(tiny_encoder_dir)}  # a bare encoder: no class head
    with pytest.raises(ConfigError, match="not a sequence classifier"):
        build_plan(load_config(config))
    config["distill"] = {"teacher": str(tiny_encoder_dir), "teacher_trial": "abc"}
    with pytest.raises(ConfigError, match="distill.teacher_trial: 'abc' picks a trial"):
        build_plan(load_config(config))


def test_an_experiment_teacher_of_other_classes_is_refused_from_its_trial_spec(
        teacher_sweep, tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """The teacher sweep's trials predict 3 classes; a 2-class sweep is refused before any
    teacher pass or experiment folder."""
    teacher, storage = teacher_sweep
    for split, n in (("train", 40), ("validation", 10)):
        rows = [{"sentence": f"text {i}", "label": i % 2} for i in range(n)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = {s: str(tmp_path / f"{s}.jsonl") for s in ("train", "validation")}
    config = _classifier(tiny_encoder_dir, files, storage, "two-classes")
    config["distill"] = {"teacher": teacher.experiment_path}
    with pytest.raises(ConfigError, match=r"predicts 3 classes but the data has 2"):
        launch(config)
    assert not (storage / "two-classes").exists()


def test_causal_lm_distillation_from_a_folder_teacher_with_reverse_kl(
        local_ray, tiny_lm_dir: Path, tmp_path: Path) -> None:
    """Another tiny Llama (other weights, the same tokenizer) teaches: alpha 0 and alpha 1 then
    minimize different losses from the same start, so their training losses differ."""
    from tiny_models import make_tiny_causal_lm

    teacher = make_tiny_causal_lm(tmp_path / "teacher", seed=1)
    config = lm_config(tiny_lm_dir, name="lm-distill", storage_path=str(tmp_path), **ONE_TRIAL)
    config["search_space"] = {"distill.alpha": {"type": "grid", "values": [0.0, 1.0]}}
    config["search"] = {"algorithm": "grid"}
    config["train"] |= {"max_steps": 10, "eval_every_steps": 5}
    config["distill"] = {"teacher": str(teacher), "kl": "reverse", "top_k": 8}
    result = launch(config)
    ran = json.loads((Path(result.experiment_path) / DISTILL_FILE).read_text())
    assert ran["examples"] == 400 and ran["target_mb"] > 0 and ran["trials"] == 2
    stored = yaml.safe_load((Path(result.experiment_path) / "sweep_config.yaml").read_text())
    assert stored["distill"]["kl"] == "reverse"
    assert result.trials["last_step"].tolist() == [10, 10]
    first = {round(float(h["train_loss"].iloc[0]), 5) for h in result.histories.values()}
    assert len(first) == 2
