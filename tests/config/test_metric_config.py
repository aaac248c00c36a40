"""Which `metric` may select trials: the fixed names, the per-class ones, and those that a
config field turns on (`data.positive_label`, `train.generation_eval`)."""

from __future__ import annotations

from typing import Any

import pytest

CLS: dict[str, Any] = {"task": "sequence_classification", "lora": {"target_modules": ["query"]}}


@pytest.mark.parametrize(("patch", "mode"), [
    ({**CLS, "metric": "eval_precision"}, "max"),
    ({**CLS, "metric": "eval_recall"}, "max"),
    ({**CLS, "metric": "eval_f1_3"}, "max"),  # no names: the class id
    ({**CLS, "metric": "eval_recall_joy", "data": {"label_names": ["anger", "joy"]}}, "max"),
    ({**CLS, "metric": "eval_f1_not_irony", "data": {"label_names": ["not irony", "irony"]}},
     "max"),
    ({**CLS, "metric": "eval_binary_f1", "data": {"positive_label": "irony"}}, "max"),
    ({"metric": "eval_exact_match", "data": {"prompt_template": "Q: {question}\nA:"},
      "train": {"generation_eval": {"num_examples": 4}}}, "max"),
])
def test_accepted_metrics_and_their_mode(make_config, patch: dict, mode: str) -> None:
    assert make_config(**patch).mode == mode


@pytest.mark.parametrize(("patch", "fragments"), [
    ({**CLS, "metric": "eval_f2"},
     ["metric: 'eval_f2' is never reported", "eval_precision", "eval_f1_<label>",
      "eval_binary_f1", "did you mean 'eval_f1'?"]),
    ({"metric": "eval_f1_joy"},
     ["metric: 'eval_f1_joy' is never reported by the causal_lm", "eval_exact_match"]),
    ({**CLS, "metric": "eval_f1_sad", "data": {"label_names": ["anger", "sadness"]}},
     ["metric: 'eval_f1_sad' names no class", "['eval_f1_anger', 'eval_f1_sadness']",
      "did you mean 'sadness'?"]),
    ({**CLS, "metric": "eval_binary_f1"},
     ["metric: 'eval_binary_f1' is reported only when data.positive_label is set"]),
    ({"metric": "eval_exact_match"},
     ["metric: 'eval_exact_match' is reported only when train.generation_eval is set"]),
    ({**CLS, "train": {"generation_eval": {}}},
     ["train.generation_eval: generates text", "drop it"]),
    ({"train": {"generation_eval": {}}},
     ["train.generation_eval: needs prompts", "data.prompt_template"]),
    ({"data": {"positive_label": "yes"}}, ["data.positive_label: 'yes' is for classifiers"]),
    ({**CLS, "data": {"label_names": ["no", "yes"], "positive_label": "Yes"}},
     ["positive_label: 'Yes' is not one of label_names", "did you mean 'yes'?"]),
    ({**CLS, "data": {"label_names": ["a", "a"]}}, ["lists ['a'] more than once"]),
    ({**CLS, "data": {"label_names": ["a"], }}, ["needs at least two"]),
    ({**CLS, "data": {"label_names": ["a", "b"], "label_names_file": "m.txt"}},
     ["label_names and label_names_file are both set"]),
    ({**CLS, "metric": "eval_f1", "mode": "min"}, ["mode: 'min' does not fit", "set mode: max"]),
])
def test_rejected_metrics_say_what_is_valid(make_raw, config_error, mentions, patch: dict,
                                            fragments: list[str]) -> None:
    mentions(str(config_error(make_raw(**patch))), *fragments)


def test_a_per_class_metric_is_checked_against_the_datas_classes(
        tiny_encoder_dir, sentiment_files: dict, tmp_path) -> None:
    from orchestrator.config.errors import ConfigError
    from orchestrator.config.loading import load_config
    from orchestrator.run.preflight import build_plan

    (tmp_path / "mapping.txt").write_text("0\tbad\n1\tmeh\n2\tgood\n")
    raw = {**CLS, "model": {"path": str(tiny_encoder_dir)},
           "data": {"train": sentiment_files["train"],
                    "validation": sentiment_files["validation"], "text_column": "sentence",
                    "label_names_file": str(tmp_path / "mapping.txt")},
           "search": {"algorithm": "random"}, "metric": "eval_f1_good"}
    plan = build_plan(load_config(raw))
    assert plan.spec.label_names == ["bad", "meh", "good"] and plan.spec.mode == "max"
    with pytest.raises(ConfigError) as info:
        build_plan(load_config({**raw, "metric": "eval_f1_2"}))  # named classes: by name
    assert ("metric: 'eval_f1_2' names no class of the data; the classes are ['bad', 'meh', "
            "'good'], so use one of ['eval_f1_bad', 'eval_f1_meh', 'eval_f1_good']"
            ) in str(info.value)
