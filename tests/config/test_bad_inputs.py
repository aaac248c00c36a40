"""Bad input that used to get past validation: each is refused before any trial starts, with a
message that names the field, the bad value and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import lm_config

from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config
from orchestrator.run.preflight import build_plan


@pytest.mark.parametrize("field,template,fragment", [
    ("prompt_template", "Question: {question\nAnswer:", "not a valid template"),
    ("prompt_template", "Question: question}", "Single '}'"),
    ("completion_template", " {answer}}", "Single '}'"),
    ("prompt_template", "Q: {0}", "not column names"),
])
def test_unbalanced_or_odd_template_braces(make_raw, config_error, mentions, field: str,
                                           template: str, fragment: str) -> None:
    err = config_error(make_raw(data={"train": "t.jsonl", field: template}))
    mentions(str(err), f"data.{field}", repr(template)[1:-1][:10], fragment, "{{ or }}")


def test_doubled_braces_are_literal(make_raw) -> None:
    cfg = load_config(make_raw(data={"train": "t.jsonl", "prompt_template": "{{x}} {q}"}))
    assert cfg.data.prompt_template == "{{x}} {q}"


def test_empty_target_module_list(make_raw, config_error, mentions) -> None:
    err = config_error(make_raw(lora={"target_modules": []}))
    mentions(str(err), "lora.target_modules", "[] adapts nothing", "all-linear")


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "with space", ".hidden", "x\\y"])
def test_experiment_names_stay_inside_storage(make_raw, config_error, mentions,
                                              name: str) -> None:
    err = config_error(make_raw(name=name))
    mentions(str(err), "name:", repr(name), "letters, digits", "no `/`, no `..`")


def test_plain_experiment_names_pass(make_raw) -> None:
    assert load_config(make_raw(name="my-sweep_1.2")).name == "my-sweep_1.2"


def test_a_config_file_name_with_spaces_still_gives_a_valid_default_name(
        tmp_path: Path, make_raw) -> None:
    path = tmp_path / "my sweep (v2).yaml"
    path.write_text(json.dumps(make_raw()))  # JSON is YAML
    name = load_config(path).name
    assert name is not None and name.startswith("my-sweep-v2-")


@pytest.mark.parametrize("text,lines", [
    ("task: causal_lm\ntrain:\n  batch_size: 8\nmetric: eval_loss\ntrain:\n  max_steps: 5\n",
     "lines 2 and 5"),
    ("task: causal_lm\ntrain:\n  batch_size: 8\n  batch_size: 16\n", "lines 3 and 4"),
])
def test_duplicate_yaml_keys_at_any_level(tmp_path: Path, config_error, mentions, text: str,
                                          lines: str) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    err = config_error(path)
    mentions(str(err), "dup.yaml", "given twice", lines, "merge them")


def test_malformed_jsonl_line_is_reported_by_file_and_line(tiny_lm_dir: Path,
                                                           tmp_path: Path) -> None:
    good = json.dumps({"date": "2030-01-02", "words": "January 2, 2030"})
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join([good, good, '{"date": "2031-01-01", "words": ', good]) + "\n")
    raw = lm_config(tiny_lm_dir)
    raw["data"]["train"] = str(train)
    with pytest.raises(ConfigError) as info:
        build_plan(load_config(raw))
    message = str(info.value)
    assert "data.train" in message and "train.jsonl" in message and "line 3" in message
    assert "fix or remove that line" in message


def test_target_module_that_matches_nothing(tiny_lm_dir: Path) -> None:
    raw = lm_config(tiny_lm_dir)
    raw["lora"]["target_modules"] = ["q_proj", "v_prj"]  # q_proj matches, v_prj nothing
    with pytest.raises(ConfigError) as info:
        build_plan(load_config(raw))
    message = str(info.value)
    assert "lora.target_modules: 'v_prj' matches no module" in message
    assert "did you mean 'v_proj'?" in message and "'q_proj'" in message  # the names listed
    assert "'q_proj' matches no module" not in message


def test_searched_target_modules_are_checked_too(tiny_lm_dir: Path) -> None:
    raw = lm_config(tiny_lm_dir)
    raw["search_space"]["lora.target_modules"] = {
        "type": "choice", "values": [["q_proj", "v_proj"], ["query"]]}
    with pytest.raises(ConfigError, match="'query' matches no module"):
        build_plan(load_config(raw))


def test_matching_target_modules_pass(tiny_lm_dir: Path) -> None:
    raw = lm_config(tiny_lm_dir)
    raw["lora"]["target_modules"] = ["q_proj", "v_proj"]
    assert build_plan(load_config(raw)).spec.lora.target_modules == ["q_proj", "v_proj"]
