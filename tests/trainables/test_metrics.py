"""Classification metrics against hand-computed values, metric names, label names from the
config or a mapping file, and the final-answer extraction of the generation metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainables.config import DataConfig
from trainables.data import DataError, prepare_data, read_label_names
from trainables.metrics import (
    classification_metrics,
    exact_match,
    final_answer,
    metric_label_keys,
    metric_mode,
    normalize_answer,
)

# preds vs labels over 3 classes, counted by hand:
#   class 0: TP 1 (row 0), FP 1 (row 1), FN 1 (row 5) -> P 1/2, R 1/2, F1 1/2
#   class 1: TP 1 (row 2), FP 0,         FN 1 (row 1) -> P 1,   R 1/2, F1 2/3
#   class 2: TP 2 (rows 3, 4), FP 1 (row 5), FN 0      -> P 2/3, R 1,   F1 4/5
PREDS = [0, 0, 1, 2, 2, 2]
LABELS = [0, 1, 1, 2, 2, 0]


def test_macro_and_per_class_precision_recall_f1_by_hand() -> None:
    m = classification_metrics(PREDS, LABELS, ["anger", "joy", "sadness"])
    assert m["eval_accuracy"] == pytest.approx(4 / 6)
    assert m["eval_precision"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    assert m["eval_recall"] == pytest.approx((1 / 2 + 1 / 2 + 1) / 3)
    assert m["eval_f1"] == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)
    expected = {"anger": (1 / 2, 1 / 2, 1 / 2), "joy": (1, 1 / 2, 2 / 3),
                "sadness": (2 / 3, 1, 4 / 5)}
    for name, (p, r, f1) in expected.items():
        assert m[f"eval_precision_{name}"] == pytest.approx(p)
        assert m[f"eval_recall_{name}"] == pytest.approx(r)
        assert m[f"eval_f1_{name}"] == pytest.approx(f1)
    assert "eval_binary_f1" not in m


def test_binary_f1_is_the_positive_class_f1() -> None:
    # positive 1: TP 2 (rows 0, 3), FP 1 (row 2), FN 1 (row 1) -> F1 2/3; class 0: F1 1/2
    preds, labels = [1, 0, 1, 1, 0], [1, 1, 0, 1, 0]
    m = classification_metrics(preds, labels, ["not_irony", "irony"], positive_id=1)
    assert m["eval_binary_f1"] == pytest.approx(2 / 3) == m["eval_f1_irony"]
    assert classification_metrics(preds, labels, ["a", "b"], positive_id=0)[
        "eval_binary_f1"] == pytest.approx(1 / 2)


def test_a_class_absent_from_the_split_counts_as_zero_in_the_macro_mean() -> None:
    m = classification_metrics([0, 1], [0, 1], ["0", "1", "2"])
    assert m["eval_f1_2"] == m["eval_precision_2"] == m["eval_recall_2"] == 0.0
    assert m["eval_f1"] == pytest.approx(2 / 3)


def test_label_keys_and_metric_modes() -> None:
    assert metric_label_keys(["not irony", "irony"]) == ["not_irony", "irony"]
    assert metric_label_keys(["a/b", "a b"]) == ["0", "1"]  # both would be `a_b`
    assert metric_label_keys(["!!", "x"]) == ["0", "1"]
    assert metric_mode("sequence_classification", "eval_f1_joy") == "max"
    assert metric_mode("sequence_classification", "eval_recall") == "max"
    assert metric_mode("sequence_classification", "eval_binary_f1") == "max"
    assert metric_mode("causal_lm", "eval_exact_match") == "max"
    assert metric_mode("causal_lm", "eval_f1_joy") is None
    assert metric_mode("sequence_classification", "eval_exact_match") is None


@pytest.mark.parametrize(("text", "answer"), [
    ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18", "18"),
    (" She pays $1,200 in total.\n#### $1,200.00\nQuestion: next", "1200"),
    ("#### 0.50", "0.5"),
    ("####-3", "-3"),
    ("#### 7 apples.", "7 apples"),
    ("the answer is 18", None),
    ("#### \n", None),
])
def test_final_answer(text: str, answer: str | None) -> None:
    assert final_answer(text) == answer


def test_exact_match_compares_final_answers() -> None:
    references = [normalize_answer("18"), normalize_answer("3"), normalize_answer("1,000")]
    predictions = [" 9 * 2 = 18\n#### 18.0", " it is 3", "#### 1000<|im_end|> ignored"]
    # row 1 has no `####`; row 3's answer line is `1000<|im_end|> ignored`, not a number
    assert exact_match(predictions, references) == pytest.approx(1 / 3)
    assert exact_match(["#### 1000"], ["1000"]) == 1.0


def test_label_names_file_in_tweeteval_format_and_one_name_per_line(tmp_path: Path) -> None:
    (tmp_path / "mapping.txt").write_text("0\tanger\n1\tjoy\n2\toptimism\n3\tsadness")
    (tmp_path / "names.txt").write_text("negative\npositive\n")
    cfg = DataConfig(train="t.jsonl", label_names_file="mapping.txt")
    assert read_label_names(cfg, tmp_path) == ["anger", "joy", "optimism", "sadness"]
    cfg = DataConfig(train="t.jsonl", label_names_file="names.txt")
    assert read_label_names(cfg, tmp_path) == ["negative", "positive"]
    (tmp_path / "gap.txt").write_text("0\tanger\n2\tjoy\n")
    with pytest.raises(DataError, match=r"label_names_file.*ids \[0, 2\].*0\.\.1"):
        read_label_names(DataConfig(train="t.jsonl", label_names_file="gap.txt"), tmp_path)
    with pytest.raises(DataError, match="label_names_file.*does not exist"):
        read_label_names(DataConfig(train="t.jsonl", label_names_file="nope.txt"), tmp_path)


def test_label_names_file_with_a_byte_order_mark_or_under_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Notepad's UTF-8 BOM used to become part of the first line: the ids were not all digits,
    so each whole line was a name ('\ufeff0\tanger'). `~` is the home folder, as for data."""
    (tmp_path / "mapping.txt").write_text("\ufeff0\tanger\n1\tjoy\n", encoding="utf-8")
    cfg = DataConfig(train="t.jsonl", label_names_file="mapping.txt")
    assert read_label_names(cfg, tmp_path) == ["anger", "joy"]
    monkeypatch.setenv("HOME", str(tmp_path))
    home = DataConfig(train="t.jsonl", label_names_file="~/mapping.txt")
    assert read_label_names(home, tmp_path / "elsewhere") == ["anger", "joy"]
    (tmp_path / "latin1.txt").write_bytes("0\tcol\xe8re\n1\tjoie\n".encode("latin-1"))
    with pytest.raises(DataError, match="label_names_file.*not UTF-8 text.*byte 0xe8"):
        read_label_names(DataConfig(train="t.jsonl", label_names_file="latin1.txt"), tmp_path)


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_string_labels_map_through_label_names(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    rows = [{"text": f"t{i}", "label": lab} for i, lab in enumerate(["irony", "not_irony"] * 4)]
    train = _write(tmp_path / "train.jsonl", rows)
    val = _write(tmp_path / "val.jsonl", rows)
    cfg = DataConfig(train=train, validation=val, label_names=["not_irony", "irony"],
                     positive_label="irony")
    data = prepare_data(cfg, "sequence_classification", tok, tmp_path)
    assert data.label_names == ["not_irony", "irony"] and data.positive_label_id == 1
    assert [e["labels"] for e in data.validation[:2]] == [1, 0]  # ids by position in the names
    # Without names, string labels are sorted: `irony` is then class 0.
    plain = prepare_data(DataConfig(train=train, validation=val), "sequence_classification",
                         tok, tmp_path)
    assert plain.label_names == ["irony", "not_irony"] and plain.validation[0]["labels"] == 0

    bad = DataConfig(train=train, validation=val, label_names=["no", "yes"])
    with pytest.raises(DataError,
                       match=r"labels \['irony', 'not_irony'\].*one of \['no', 'yes'\]"):
        prepare_data(bad, "sequence_classification", tok, tmp_path)
    three = _write(tmp_path / "three.jsonl", [{"text": "x", "label": i} for i in range(3)])
    three_val = _write(tmp_path / "three_val.jsonl", [{"text": "y", "label": 0}])
    with pytest.raises(DataError, match="positive_label.*binary tasks.*3 classes"):
        prepare_data(DataConfig(train=three, validation=three_val, positive_label="1"),
                     "sequence_classification", tok, tmp_path)
