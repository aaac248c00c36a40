"""Bad data is rejected before any trial starts, naming the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import lm_config

from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config
from orchestrator.run.preflight import build_plan


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
