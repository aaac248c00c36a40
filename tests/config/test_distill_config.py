"""The `distill` section: its fields' rules, and the teacher checks preflight runs before any
trial (`orchestrator.run.teacher.check_teacher`), on tiny models built from a config."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import make_tiny_causal_lm, make_tiny_encoder

from orchestrator.run.teacher import check_teacher, pinned_teacher
from trainables import modeling
from trainables.config import ModelConfig
from trainables.data import PreparedData


@pytest.mark.parametrize(("distill", "fragments"), [
    ({"teacher": "t", "alpha": 1.5}, ["distill.alpha", "1.5", "less than or equal to 1"]),
    ({"teacher": "t", "temperature": 0}, ["distill.temperature", "greater than 0"]),
    ({"teacher": "t", "kl": "backward"}, ["distill.kl", "'forward' or 'reverse'"]),
    ({"alpha": 0.5}, ["distill.teacher"]),
    ({"teacher": "  "}, ["distill.teacher", "is empty"]),
])
def test_distill_fields(make_raw, config_error, mentions, distill: dict, fragments: list[str]
                        ) -> None:
    mentions(str(config_error(make_raw(distill=distill))), *fragments)


def test_searching_distill_without_the_section(make_raw, config_error, mentions) -> None:
    raw = make_raw()
    raw["search_space"]["distill.temperature"] = {"type": "choice", "values": [1, 2]}
    mentions(str(config_error(raw)), "search_space.distill.temperature",
             "no distill section", "distill.teacher")


def test_searched_distill_values_are_checked_like_train_values(make_raw, config_error,
                                                               mentions) -> None:
    raw = make_raw(distill={"teacher": "t"})
    raw["search_space"]["distill.alpha"] = {"type": "choice", "values": [0.5, 2.0]}
    mentions(str(config_error(raw)), "search_space.distill.alpha", "2.0 is not a valid")


def test_the_teachers_own_settings_are_not_searchable(make_raw, config_error, mentions) -> None:
    raw = make_raw(distill={"teacher": "t"})
    raw["search_space"]["distill.top_k"] = {"type": "choice", "values": [8, 16]}
    mentions(str(config_error(raw)), "search_space.distill.top_k", "fixed for the whole sweep",
             "['alpha', 'kl', 'temperature']")


def _classifier(folder: Path, labels: int, names: list[str] | None = None) -> Path:
    from transformers import AutoModelForSequenceClassification

    kwargs = {"id2label": dict(enumerate(names))} if names else {}
    AutoModelForSequenceClassification.from_pretrained(
        make_tiny_encoder(folder), num_labels=labels, **kwargs).save_pretrained(folder)
    return folder


def test_a_teacher_with_another_class_count(make_config, tmp_path: Path) -> None:
    teacher = _classifier(tmp_path / "teacher", labels=5)
    config = make_config(task="sequence_classification", distill={"teacher": str(teacher)})
    data = PreparedData(task="sequence_classification", train=[], validation=[], num_labels=4)
    (problem,) = check_teacher(config, data, None)
    assert "predicts 5 classes but the data has 4" in problem
    right = PreparedData(task="sequence_classification", train=[], validation=[], num_labels=5)
    assert check_teacher(config, right, None) == []


def test_a_teacher_with_the_classes_in_another_order(make_config, tmp_path: Path) -> None:
    teacher = _classifier(tmp_path / "teacher", labels=3, names=["joy", "anger", "sadness"])
    config = make_config(task="sequence_classification", distill={"teacher": str(teacher)})
    data = PreparedData(task="sequence_classification", train=[], validation=[], num_labels=3,
                        label_names=["anger", "joy", "sadness"])
    (problem,) = check_teacher(config, data, None)
    assert "names its classes ['joy', 'anger', 'sadness']" in problem
    data.label_names = ["joy", "anger", "sadness"]
    assert check_teacher(config, data, None) == []
    data.label_names = None  # integer labels: nothing to compare the names with
    assert check_teacher(config, data, None) == []


def test_a_causal_lm_teacher_must_be_a_causal_lm(make_config, tmp_path: Path) -> None:
    teacher = _classifier(tmp_path / "teacher", labels=3)
    config = make_config(distill={"teacher": str(teacher)})
    data = PreparedData(task="causal_lm", train=[], validation=[])
    (problem,) = check_teacher(config, data, None)
    assert "is not a causal LM" in problem and "BertForSequenceClassification" in problem


def test_a_causal_lm_teacher_needs_the_students_vocabulary(make_config, tmp_path: Path) -> None:
    teacher = make_tiny_causal_lm(tmp_path / "teacher")
    config = make_config(distill={"teacher": str(teacher)})
    data = PreparedData(task="causal_lm", train=[], validation=[])
    same = modeling.load_tokenizer(ModelConfig(path=str(teacher)))
    assert check_teacher(config, data, same) == []
    other = modeling.load_tokenizer(ModelConfig(path=str(teacher)))
    other.add_tokens(["<extra>"])
    (problem,) = check_teacher(config, data, other)
    assert "has another vocabulary than the student" in problem


def test_resume_keeps_the_teacher_trial_the_sweep_started_with(make_config) -> None:
    config = make_config(distill={"teacher": "experiments/teacher"})
    pinned = pinned_teacher(config, {"trial_id": "abc_00003", "experiment": "..."})
    assert pinned.distill is not None and pinned.distill.teacher_trial == "abc_00003"
    assert config.distill is not None and config.distill.teacher_trial is None  # a copy
    assert pinned_teacher(config, {"teacher": "hub/model"}) is config  # a model teacher
