"""Read the splits, carve a validation split if needed, and tokenize once per sweep.

The driver calls `prepare_data` once and hands the result to every trial through Ray's object
store, so trials neither re-read nor re-tokenize the data.
"""

from __future__ import annotations

import random
import string
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainables.config import DataConfig, SplitSource, Task, TextLabelFiles

IGNORE_INDEX = -100
_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(ValueError):
    """Bad data input; the message names the config field and the fix."""


@dataclass
class PreparedData:
    """Tokenized splits: lists of examples with `input_ids` and `labels`."""

    task: Task
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    test: list[dict[str, Any]] = field(default_factory=list)
    num_labels: int | None = None
    label_names: list[str] | None = None
    raw_validation_texts: list[str] = field(default_factory=list)
    raw_train_texts: list[str] = field(default_factory=list)
    raw_test_texts: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "train_examples": len(self.train),
            "validation_examples": len(self.validation),
            "test_examples": len(self.test),
            "train_tokens": sum(len(e["input_ids"]) for e in self.train),
        }


def _read_local(source: SplitSource, field_name: str, base_dir: Path) -> list[dict[str, Any]]:
    if isinstance(source, TextLabelFiles):
        text_path, label_path = base_dir / source.text, base_dir / source.labels
        for p, sub in ((text_path, "text"), (label_path, "labels")):
            if not p.exists():
                raise DataError(f"data.{field_name}.{sub}: file {str(p)!r} does not exist")
        texts = text_path.read_text(encoding="utf-8").splitlines()
        labels = label_path.read_text(encoding="utf-8").splitlines()
        if len(texts) != len(labels):
            raise DataError(
                f"data.{field_name}: {len(texts)} texts but {len(labels)} labels; the two files "
                "must have one line per example, in the same order"
            )
        return [
            {"text": t, "label": int(lab) if lab.strip().lstrip("-").isdigit() else lab.strip()}
            for t, lab in zip(texts, labels, strict=True)
        ]
    path = base_dir / source
    if not path.exists():
        raise DataError(f"data.{field_name}: file {str(path)!r} does not exist")
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"data.{field_name}: cannot read {path.name!r}; use one of {sorted(_FORMATS)} "
            "or a {text, labels} pair of line files"
        )
    with path.open("rb") as head:
        if not head.read(4096).strip():
            return []  # reported as an empty split by the caller
    from datasets import load_dataset

    try:
        return list(load_dataset(fmt, data_files=str(path), split="train"))
    except Exception as err:  # a parse error deep in pyarrow: say which file and field
        where = _first_bad_json_line(path) if path.suffix.lower() == ".jsonl" else None
        if where is not None:
            line, problem = where
            raise DataError(
                f"data.{field_name}: {str(path)!r} line {line} is not one JSON object "
                f"({problem}); fix or remove that line"
            ) from None
        raise DataError(
            f"data.{field_name}: cannot read {str(path)!r} as {fmt}: {err}; check the file"
        ) from None


def _first_bad_json_line(path: Path) -> tuple[int, str] | None:
    """(line number, what is wrong) of the first line of a JSON Lines file that is not a JSON
    object; None when every line is one (the reader failed for another reason)."""
    import json

    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                return number, f"{err.msg} at column {err.colno}"
            if not isinstance(value, dict):
                return number, f"a JSON {type(value).__name__}, not an object"
    return None


def _read_hub(cfg: DataConfig, split: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    assert cfg.hub_dataset is not None
    return list(load_dataset(cfg.hub_dataset, cfg.hub_config, split=split))


def read_splits(cfg: DataConfig, base_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Raw rows per split; validation carved from train (seeded) when none is given."""
    splits: dict[str, list[dict[str, Any]]] = {}
    for name in ("train", "validation", "test"):
        source = getattr(cfg, name)
        if source is None:
            continue
        if cfg.hub_dataset is not None:
            if not isinstance(source, str):
                raise DataError(f"data.{name}: with hub_dataset set, give the hub split name")
            splits[name] = _read_hub(cfg, source)
        else:
            splits[name] = _read_local(source, name, base_dir)
        if not splits[name]:
            raise DataError(f"data.{name}: the split is empty; point it at a file with rows")
    if "validation" not in splits:
        rows = splits["train"][:]
        random.Random(cfg.split_seed).shuffle(rows)
        n_val = max(1, round(len(rows) * cfg.validation_fraction))
        if len(rows) - n_val < 1:
            raise DataError(
                f"data.train: {len(rows)} rows are too few to carve a validation split of "
                f"fraction {cfg.validation_fraction}; add rows or give data.validation"
            )
        splits["validation"], splits["train"] = rows[:n_val], rows[n_val:]
    if cfg.max_train_examples is not None:
        splits["train"] = splits["train"][: cfg.max_train_examples]
    if cfg.max_eval_examples is not None:
        for name in ("validation", "test"):
            if name in splits:
                splits[name] = splits[name][: cfg.max_eval_examples]
    return splits


def _template_fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def check_columns(cfg: DataConfig, task: Task, rows: list[dict[str, Any]], split: str) -> None:
    columns = set(rows[0].keys())
    if task == "sequence_classification":
        needed = {"text_column": cfg.text_column, "label_column": cfg.label_column}
    elif cfg.prompt_template is not None:
        needed = {
            f"prompt_template field {{{f}}}": f
            for f in _template_fields(cfg.prompt_template) | _template_fields(
                cfg.completion_template
            )
        }
    else:
        needed = {"text_column": cfg.text_column}
    for what, column in needed.items():
        if column not in columns:
            raise DataError(
                f"data.{what}: column {column!r} is not in the {split} split; its columns are "
                f"{sorted(columns)}. Set the column mapping to one of them"
            )


def texts_of(cfg: DataConfig, task: Task, rows: list[dict[str, Any]]) -> list[str]:
    """The input text of each row, as the model sees it (used for leakage checks and SFT)."""
    if task == "causal_lm" and cfg.prompt_template is not None:
        return [cfg.prompt_template.format(**r) for r in rows]
    return [str(r[cfg.text_column]) for r in rows]


def _tokenize_causal(cfg: DataConfig, tokenizer: Any, rows: list[dict[str, Any]]) -> list[dict]:
    out = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for row in rows:
        if cfg.prompt_template is not None:
            prompt = tokenizer(cfg.prompt_template.format(**row), add_special_tokens=False)
            completion = tokenizer(cfg.completion_template.format(**row), add_special_tokens=False)
            p_ids, c_ids = prompt["input_ids"], completion["input_ids"] + eos
            ids = (p_ids + c_ids)[: cfg.max_length]
            # Loss only on the completion: the prompt positions are masked out.
            labels = ([IGNORE_INDEX] * len(p_ids) + c_ids)[: cfg.max_length]
        else:
            ids = tokenizer(str(row[cfg.text_column]), add_special_tokens=False)["input_ids"]
            ids = (ids + eos)[: cfg.max_length]
            labels = list(ids)
        if any(lab != IGNORE_INDEX for lab in labels[1:]):
            out.append({"input_ids": ids, "labels": labels})
    return out


def _label_ids(splits: dict[str, list[dict]], column: str) -> tuple[dict[Any, int], list[str]]:
    values = {r[column] for rows in splits.values() for r in rows}
    if all(isinstance(v, int) for v in values):
        n = max(values) + 1
        return {i: i for i in range(n)}, [str(i) for i in range(n)]
    names = sorted(str(v) for v in values)
    return {name: i for i, name in enumerate(names)}, names


def prepare_data(cfg: DataConfig, task: Task, tokenizer: Any, base_dir: Path,
                 tokenize: Collection[str] = ("train", "validation", "test")) -> PreparedData:
    """Read, check and tokenize the splits. `tokenize` names the splits to tokenize (the others
    come back empty): scoring a finished sweep needs validation and test, not train. Every split
    is still read, so the validation carve-out and the label ids are the sweep's own."""
    splits = read_splits(cfg, base_dir)
    for name, rows in splits.items():
        check_columns(cfg, task, rows, name)
    wanted = {name: rows for name, rows in splits.items() if name in tokenize}
    if task == "causal_lm":
        tokenized = {name: _tokenize_causal(cfg, tokenizer, rows) for name, rows in wanted.items()}
        num_labels, label_names = None, None
    else:
        mapping, label_names = _label_ids(splits, cfg.label_column)
        num_labels = len(label_names)
        tokenized = {}
        for name, rows in wanted.items():
            enc = tokenizer(
                [str(r[cfg.text_column]) for r in rows], truncation=True, max_length=cfg.max_length
            )["input_ids"]
            key = (lambda v: v) if isinstance(next(iter(mapping)), int) else str
            tokenized[name] = [
                {"input_ids": ids, "labels": mapping[key(r[cfg.label_column])]}
                for ids, r in zip(enc, rows, strict=True)
            ]
    for name, examples in tokenized.items():
        if not examples:
            raise DataError(
                f"data.{name}: no usable examples after tokenization (every completion was cut "
                f"by max_length={cfg.max_length}); raise data.max_length"
            )
    return PreparedData(
        task=task,
        train=tokenized.get("train", []),
        validation=tokenized.get("validation", []),
        test=tokenized.get("test", []),
        num_labels=num_labels,
        label_names=label_names,
        raw_train_texts=texts_of(cfg, task, splits["train"]),
        raw_validation_texts=texts_of(cfg, task, splits["validation"]),
        raw_test_texts=texts_of(cfg, task, splits["test"]) if "test" in splits else [],
    )
