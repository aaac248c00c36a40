"""Bad data is rejected before any trial starts, naming the field and the fix."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sweep_helpers import lm_config

from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config
from orchestrator.run.preflight import build_plan
from trainables.config import DataConfig
from trainables.data import read_splits


def _plan_error(config: dict) -> str:
    with pytest.raises(ConfigError) as info:
        build_plan(load_config(config))
    return str(info.value)


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_missing_data_file(tiny_lm_dir: Path, tmp_path: Path) -> None:
    config = lm_config(tiny_lm_dir)
    config["data"]["train"] = str(tmp_path / "nope.jsonl")
    msg = _plan_error(config)
    assert "data.train: file" in msg and "nope.jsonl" in msg and "does not exist" in msg


def test_unknown_file_format(tiny_lm_dir: Path, tmp_path: Path) -> None:
    config = lm_config(tiny_lm_dir)
    (tmp_path / "rows.xlsx").write_text("x")
    config["data"]["train"] = str(tmp_path / "rows.xlsx")
    msg = _plan_error(config)
    assert "data.train: cannot read 'rows.xlsx'" in msg and ".jsonl" in msg


def test_empty_split(tiny_lm_dir: Path, tmp_path: Path) -> None:
    config = lm_config(tiny_lm_dir)
    (tmp_path / "empty.jsonl").write_text("")
    config["data"]["validation"] = str(tmp_path / "empty.jsonl")
    msg = _plan_error(config)
    assert "data.validation" in msg and "empty" in msg


def test_text_and_label_files_of_different_lengths(tiny_encoder_dir: Path,
                                                   tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("a\nb\nc\n")
    (tmp_path / "l.txt").write_text("0\n1\n")
    config = lm_config(tiny_encoder_dir, task="sequence_classification", metric="eval_f1",
                       data={"train": {"text": str(tmp_path / "t.txt"),
                                       "labels": str(tmp_path / "l.txt")}})
    msg = _plan_error(config)
    assert "data.train: 3 texts but 2 labels" in msg and "same order" in msg


def test_missing_label_column(tiny_encoder_dir: Path, sentiment_files: dict) -> None:
    config = lm_config(tiny_encoder_dir, task="sequence_classification", metric="eval_f1",
                       data={"train": sentiment_files["train"], "text_column": "sentence",
                             "label_column": "labels"})
    msg = _plan_error(config)
    assert "data.label_column: column 'labels' is not in the train split" in msg
    assert "'label'" in msg  # the columns that do exist


def test_too_few_rows_to_carve_validation(tiny_lm_dir: Path, tmp_path: Path) -> None:
    config = lm_config(tiny_lm_dir)
    config["data"]["train"] = _jsonl(tmp_path / "one.jsonl",
                                     [{"date": "2020-01-01", "words": "January 1, 2020"}])
    del config["data"]["validation"]
    msg = _plan_error(config)
    assert "data.train: 1 rows are too few to carve a validation split" in msg


def test_completions_cut_away_by_max_length(tiny_lm_dir: Path) -> None:
    config = lm_config(tiny_lm_dir)
    config["data"]["max_length"] = 8  # the prompt alone is longer: no completion token left
    msg = _plan_error(config)
    assert "no usable examples after tokenization" in msg and "raise data.max_length" in msg


def test_model_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    config = lm_config(tmp_path / "weights")
    msg = _plan_error(config)
    assert "has no config.json" in msg


def test_tokenizer_without_pad_token_is_handled(tiny_lm_dir: Path) -> None:
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tiny_lm_dir).pad_token is None
    plan = build_plan(load_config(lm_config(tiny_lm_dir)))
    assert plan.pad_id is not None


# --- labels and data.max_train_examples / the carved validation split --------------------------


def _classes(tiny_encoder_dir: Path, tmp_path: Path, train: list[int],
             validation: list[int] | None, **data: object) -> dict:
    rows = [{"text": f"it was {label} {i}", "label": label} for i, label in enumerate(train)]
    split = {"train": _jsonl(tmp_path / "train.jsonl", rows)}
    if validation is not None:
        split["validation"] = _jsonl(tmp_path / "val.jsonl", [
            {"text": f"held {label} {i}", "label": label} for i, label in enumerate(validation)])
    return lm_config(tiny_encoder_dir, task="sequence_classification", metric="eval_f1",
                     data={**split, "max_length": 32, **data})


def test_a_class_the_train_cap_leaves_out_is_a_warning_naming_the_cap(
        tiny_encoder_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """TweetEval with `--set data.max_train_examples=4`: the first four rows lack class 3."""
    config = _classes(tiny_encoder_dir, tmp_path, [2, 0, 1, 0] + [3, 1, 2, 0] * 10, [0, 1, 2, 3],
                      max_train_examples=4)
    with caplog.at_level(logging.WARNING, logger="trainables.data"):
        plan = build_plan(load_config(config))
    assert plan.data.num_labels == 4 and len(plan.data.train) == 4
    assert "data.validation: labels 3 occur in no train example kept" in caplog.text
    assert "data.max_train_examples (4) keeps the first 4 train rows" in caplog.text
    assert "raise data.max_train_examples" in caplog.text


def test_one_class_left_by_the_train_cap_says_so(tiny_encoder_dir: Path,
                                                 tmp_path: Path) -> None:
    config = _classes(tiny_encoder_dir, tmp_path, [0, 0, 0] + [1, 0] * 10, [0, 1],
                      max_train_examples=3)
    msg = _plan_error(config)
    assert "data.train: every train example kept has label 0" in msg
    assert "data.max_train_examples (3) keeps the first 3 train rows" in msg
    assert "raise data.max_train_examples" in msg


def test_a_rare_class_carved_into_validation_is_a_warning(
        tiny_encoder_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = _classes(tiny_encoder_dir, tmp_path, [0, 1] * 20 + [2], None)  # one of class 2
    config["data"]["split_seed"] = next(  # one whose carve-out takes that example
        seed for seed in range(1000)
        if any(r["label"] == 2 for r in read_splits(
            DataConfig(train=config["data"]["train"], split_seed=seed), tmp_path)["validation"]))
    with caplog.at_level(logging.WARNING, logger="trainables.data"):
        plan = build_plan(load_config(config))
    assert plan.data.num_labels == 3
    assert "data.validation: labels 2 occur in no train example kept" in caplog.text
    assert "validation rows carved from data.train took every example" in caplog.text


def test_a_declared_class_train_lacks_is_a_warning_and_an_undeclared_one_an_error(
        tiny_encoder_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    names = ["neg", "pos", "mixed"]
    config = _classes(tiny_encoder_dir, tmp_path, [0, 1] * 20, [0, 1, 2], label_names=names)
    with caplog.at_level(logging.WARNING, logger="trainables.data"):
        assert build_plan(load_config(config)).data.label_names == names
    assert "labels 2 (mixed) occur in no train example kept" in caplog.text
    assert "data.label_names names them" in caplog.text
    config = _classes(tiny_encoder_dir, tmp_path, [0, 1] * 20, [0, 1, 2])
    assert "data.validation: label 2 (row 3) never occurs in data.train" in _plan_error(config)
