"""Read the splits, carve a validation split if needed, and tokenize once per sweep.

The driver calls `prepare_data` once and hands the result to every trial through Ray's object
store, so trials neither re-read nor re-tokenize the data.
"""

from __future__ import annotations

import logging
import math
import os
import random
import string
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainables.config import (
    DataConfig,
    GenerationEvalConfig,
    SplitSource,
    Task,
    TextLabelFiles,
    same_split_message,
)

IGNORE_INDEX = -100
_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
log = logging.getLogger(__name__)


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
    positive_label_id: int | None = None  # data.positive_label's id (eval_binary_f1)
    # train.generation_eval's fixed sample: {"prompt_ids": [...], "answer": "18"} per row
    generation_validation: list[dict[str, Any]] = field(default_factory=list)
    generation_test: list[dict[str, Any]] = field(default_factory=list)
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


def _local_path(base_dir: Path, source: str) -> Path:
    return base_dir / os.path.expanduser(source)


def _a_file(path: Path, where: str) -> None:
    if not path.exists():
        raise DataError(f"{where}: file {str(path)!r} does not exist")
    if path.is_dir():
        raise DataError(f"{where}: {str(path)!r} is a folder, not a file; point it at a "
                        ".jsonl, .json, .csv or .parquet file (or a {text, labels} file pair)")


def _not_utf8(path: Path, where: str, offset: int, byte: int) -> DataError:
    return DataError(f"{where}: {str(path)!r} is not UTF-8 text (byte {byte:#04x} at offset "
                     f"{offset}); re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE)")


def _first_non_utf8(path: Path) -> tuple[int, int] | None:
    """(offset, value) of the first byte that is not UTF-8, reading the file in chunks."""
    import codecs

    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            pending = len(decoder.getstate()[0])  # a character split across chunks
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                return offset - pending + err.start, err.object[err.start]
            offset += len(chunk)
    return None


def _read_lines(path: Path, where: str) -> list[str]:
    _a_file(path, where)
    try:  # utf-8-sig: a byte-order mark (Notepad) must not become part of the first line
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise _not_utf8(path, where, err.start, err.object[err.start]) from None


def _read_local(source: SplitSource, field_name: str, base_dir: Path) -> list[dict[str, Any]]:
    if isinstance(source, TextLabelFiles):
        text_path = _local_path(base_dir, source.text)
        label_path = _local_path(base_dir, source.labels)
        texts = _read_lines(text_path, f"data.{field_name}.text")
        labels = _read_lines(label_path, f"data.{field_name}.labels")
        if len(texts) != len(labels):
            raise DataError(
                f"data.{field_name}: {len(texts)} texts but {len(labels)} labels; the two files "
                "must have one line per example, in the same order"
            )
        return [
            {"text": t, "label": int(lab) if lab.strip().lstrip("-").isdigit() else lab.strip()}
            for t, lab in zip(texts, labels, strict=True)
        ]
    path = _local_path(base_dir, source)
    _a_file(path, f"data.{field_name}")
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
        rows = list(load_dataset(fmt, data_files=str(path), split="train"))
    except Exception as err:  # a parse error deep in pyarrow: say which file and field
        undecodable = _first_non_utf8(path) if fmt != "parquet" else None
        if undecodable is not None:
            raise _not_utf8(path, f"data.{field_name}", *undecodable) from None
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
    if (path.suffix.lower() == ".json" and len(rows) == 1 and rows[0]
            and all(isinstance(v, list) for v in rows[0].values())):
        raise DataError(
            f"data.{field_name}: {str(path)!r} holds one JSON object whose values are lists, not "
            "rows; a .json file must be an array of row objects ([{...}, {...}]), or use JSON "
            "Lines (.jsonl), one object per line"
        )
    return rows


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


def _read_hub(cfg: DataConfig, split: str, field_name: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    assert cfg.hub_dataset is not None
    try:
        return list(load_dataset(cfg.hub_dataset, cfg.hub_config, split=split))
    except Exception as err:  # offline, a wrong name, config or split: many types
        first = (str(err).strip().splitlines() or [""])[0]
        raise DataError(
            f"data.{field_name}: hub dataset {cfg.hub_dataset!r} (split {split!r}) cannot be "
            f"loaded ({type(err).__name__}: {first}); check the name, data.hub_config, the split, "
            "the network and HF_TOKEN, or use local files"
        ) from None


def _check_distinct_files(cfg: DataConfig, base_dir: Path) -> None:
    """Two splits that are one file, however the paths are spelled (`./`, `..`, links)."""
    seen: list[tuple[str, Path]] = []
    for name in ("train", "validation", "test"):
        source = getattr(cfg, name)
        text = source.text if isinstance(source, TextLabelFiles) else source
        if cfg.hub_dataset is not None or not isinstance(text, str):
            continue
        path = _local_path(base_dir, text)
        if not path.is_file():
            continue  # reported when the split is read
        for earlier, other in seen:
            if os.path.samefile(path, other):
                raise DataError(same_split_message(name, earlier, repr(str(path))))
        seen.append((name, path))


def read_splits(cfg: DataConfig, base_dir: Path, task: Task | None = None, *,
                stored: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Raw rows per split; validation carved from train (seeded) when none is given, then cut
    to data.max_train_examples / max_eval_examples. With `task`, each split's columns and rows
    are checked as read (so row numbers are the file's). `stored`: the data of a sweep that has
    run, read back; the checks of what a new sweep may train on (one file as two splits, row
    values) are skipped, so it reads as that sweep read it."""
    return cap_splits(cfg, _uncapped_splits(cfg, base_dir, task, stored))


def _uncapped_splits(cfg: DataConfig, base_dir: Path, task: Task | None, stored: bool
                     ) -> dict[str, list[dict[str, Any]]]:
    if not stored:
        _check_distinct_files(cfg, base_dir)
    splits: dict[str, list[dict[str, Any]]] = {}
    for name in ("train", "validation", "test"):
        source = getattr(cfg, name)
        if source is None:
            continue
        if cfg.hub_dataset is not None:
            if not isinstance(source, str):
                raise DataError(f"data.{name}: with hub_dataset set, give the hub split name")
            splits[name] = _read_hub(cfg, source, name)
        else:
            splits[name] = _read_local(source, name, base_dir)
        if not splits[name]:
            raise DataError(f"data.{name}: the split is empty; point it at a file with rows")
        if task is not None:
            check_columns(cfg, task, splits[name], name)
            if not stored:
                check_rows(cfg, task, splits[name], name)
            if task == "sequence_classification":  # a KeyError later, stored or not
                _check_negative_labels(cfg, splits[name], name)
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
    return splits


def cap_splits(cfg: DataConfig, splits: dict[str, list[dict[str, Any]]]
               ) -> dict[str, list[dict[str, Any]]]:
    """The first data.max_train_examples train rows and max_eval_examples held-out rows."""
    caps = {"train": cfg.max_train_examples, "validation": cfg.max_eval_examples,
            "test": cfg.max_eval_examples}
    return {name: rows[: caps[name]] if caps[name] is not None else rows
            for name, rows in splits.items()}


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


def _needed_columns(cfg: DataConfig, task: Task) -> dict[str, str]:
    """column -> the config field that names it."""
    if task == "sequence_classification":
        return {cfg.text_column: "text_column", cfg.label_column: "label_column"}
    if cfg.prompt_template is None:
        return {cfg.text_column: "text_column"}
    return {**{f: "completion_template" for f in _template_fields(cfg.completion_template)},
            **{f: "prompt_template" for f in _template_fields(cfg.prompt_template)}}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def check_rows(cfg: DataConfig, task: Task, rows: list[dict[str, Any]], split: str) -> None:
    """Every row has a plain value in each needed column, and there is text to learn from.
    (A JSON Lines row without a key reads as null; a chat-style list would be trained on as
    its Python repr.)"""
    for column, what in _needed_columns(cfg, task).items():
        missing = [i for i, r in enumerate(rows, start=1) if _missing(r.get(column))]
        if missing:
            raise DataError(
                f"data.{split}: row {missing[0]} has no value for column {column!r} (named by "
                f"data.{what}); {len(missing)} rows lack it: fill them in or remove those rows"
            )
        nested = next(((i, r[column]) for i, r in enumerate(rows, start=1)
                       if isinstance(r[column], list | dict)), None)
        if nested is not None:
            chat = (" (chat-style message lists are not supported: render them into text first)"
                    if isinstance(nested[1], list) else "")
            raise DataError(
                f"data.{split}: column {column!r} (data.{what}) holds a "
                f"{type(nested[1]).__name__} in row {nested[0]}, not text; point data.{what} at "
                f"a column of plain values{chat}"
            )
    if task == "causal_lm" and cfg.prompt_template is not None:
        if all(not cfg.completion_template.format(**r).strip() for r in rows):
            raise DataError(
                f"data.completion_template: {cfg.completion_template!r} renders to empty text "
                f"for every {split} row, so there is nothing to learn; check the column it names"
            )
    elif all(not str(r[cfg.text_column]).strip() for r in rows):
        raise DataError(
            f"data.{split}: column {cfg.text_column!r} (data.text_column) is empty in every row; "
            "point data.text_column at the column holding the input text"
        )


def _check_negative_labels(cfg: DataConfig, rows: list[dict[str, Any]], split: str) -> None:
    negative = next(((i, r.get(cfg.label_column)) for i, r in enumerate(rows, start=1)
                     if _is_int(r.get(cfg.label_column)) and r[cfg.label_column] < 0), None)
    if negative is not None:
        raise DataError(
            f"data.{split}: label {negative[1]} (row {negative[0]}, column "
            f"{cfg.label_column!r}) is negative; integer labels are class ids 0..N-1: "
            "renumber them, or write labels as text"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_labels(cfg: DataConfig, splits: dict[str, list[dict[str, Any]]],
                 uncapped: dict[str, list[dict[str, Any]]] | None = None,
                 names: list[str] | None = None) -> list[str]:
    """Class labels a classifier can learn: one kind (ids or names), ids 0..N-1 that all
    occur in the train file, at least two classes in train, and no validation/test label
    outside the label set. `splits` are cut to the data.max_*_examples caps, `uncapped` are
    not (default: the same); `names` are the configured class names, if any.

    Returns warnings: a held-out label the kept train rows lack although it is a class (the
    cap, or the carved validation split, took its train examples), which the classifier
    cannot learn but which is no mistake in the data."""
    column, uncapped = cfg.label_column, uncapped or splits
    values = [r[column] for rows in splits.values() for r in rows]
    number = next((v for v in values if _is_int(v)), None)
    text = next((v for v in values if isinstance(v, str)), None)
    if number is not None and text is not None:
        raise DataError(
            f"data.label_column: labels mix numbers and text (e.g. {number!r} and {text!r} in "
            f"column {column!r}); write them all one way: class ids 0..N-1, or class names"
        )
    train = {r[column] for r in splits["train"]}
    carved = cfg.validation is None
    # The labels of the data.train file: its rows before the carve-out and the cap.
    given = {r[column] for name in (("train", "validation") if carved else ("train",))
             for r in uncapped.get(name, [])}
    capped = len(splits["train"]) < len(uncapped["train"])
    cap = (f"data.max_train_examples ({cfg.max_train_examples}) keeps the first "
           f"{len(splits['train'])} train rows" if capped else "")
    if len(train) < 2:
        if capped and len(given) > 1:
            raise DataError(
                f"data.train: every train example kept has label {next(iter(train))!r}: {cap}, "
                f"and a classifier needs at least 2 classes; raise data.max_train_examples")
        raise DataError(
            f"data.train: every example has label {next(iter(train))!r}; a classifier needs at "
            f"least 2 classes in train; check data.label_column ({column!r}) and the data"
        )
    if all(_is_int(v) for v in given):
        absent = sorted(set(range(max(given) + 1)) - given)
        if absent:
            raise DataError(
                f"data.label_column: integer labels are class ids 0..N-1, but train has no "
                f"example of {absent} (labels seen in train: {sorted(given)}); renumber them "
                "(e.g. 1-5 stars -> 0-4), or write labels as text"
            )
    warnings = []
    for split in ("validation", "test"):
        unseen = [(i, r[column]) for i, r in enumerate(splits.get(split, []), start=1)
                  if r[column] not in train]
        if not unseen:
            continue
        outside = [(i, v) for i, v in unseen if not _a_class(v, given, names)]
        if outside:
            i, value = outside[0]
            where = (f"row {i}" if getattr(cfg, split) is not None
                     else "in the rows carved from data.train")
            raise DataError(
                f"data.{split}: label {value!r} ({where}) never occurs in data.train "
                f"(labels there: {sorted(given, key=str)}); a classifier cannot learn a class it "
                "never sees: fix the label, or add train examples of it"
            )
        labels = sorted({v for _, v in unseen}, key=str)
        in_file = [v for v in labels if v in given]
        if capped and any(v in {r[column] for r in uncapped["train"]} for v in in_file):
            why = f"{cap}; raise data.max_train_examples to train on them"
        elif carved and in_file:
            why = ("the validation rows carved from data.train took every example of them (a "
                   "rare class); give data.validation, or another data.split_seed")
        else:
            why = "data.label_names names them, but data.train has no example of them"
        named = [f"{v} ({names[v]})" if names and _is_int(v) and v < len(names) else repr(v)
                 for v in labels]
        warnings.append(f"data.{split}: labels {', '.join(named)} occur in no train example "
                        f"kept, so the classifier cannot learn them (they score as errors): {why}")
    return warnings


def _a_class(value: Any, given: set[Any], names: list[str] | None) -> bool:
    """Whether `value` is one of the task's classes: a label of the train file, or one that
    data.label_names declares (by name, or by id)."""
    if value in given or names is None:
        return value in given
    return value in names if isinstance(value, str) else _is_int(value) and 0 <= value < len(names)


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


def _label_ids(splits: dict[str, list[dict]], column: str, names: list[str] | None = None
               ) -> tuple[dict[Any, int], list[str]]:
    values = {r[column] for rows in splits.values() for r in rows}
    if names is not None:
        return _named_label_ids(values, names, splits, column), names
    if all(isinstance(v, int) for v in values):
        n = max(values) + 1
        return {i: i for i in range(n)}, [str(i) for i in range(n)]
    names = sorted(str(v) for v in values)
    return {name: i for i, name in enumerate(names)}, names


def _named_label_ids(values: set[Any], names: list[str], splits: dict[str, list[dict]],
                     column: str) -> dict[Any, int]:
    """Raw label -> id under configured class names: an integer is the id itself, a string
    the position of its name."""
    mapping: dict[Any, int] = {}
    unknown: list[Any] = []
    for value in values:
        if isinstance(value, int) and 0 <= value < len(names):
            mapping[value] = value
        elif isinstance(value, str) and value in names:
            mapping[value] = names.index(value)
        else:
            unknown.append(value)
    if unknown:
        unknown.sort(key=str)
        split = next(n for n, rows in splits.items() if any(r[column] in unknown for r in rows))
        raise DataError(
            f"data.label_names: the {split} split has labels {unknown} in column {column!r} "
            f"that are no class: labels must be one of {names} or an id 0..{len(names) - 1}; "
            "add the classes to data.label_names (or the label_names_file) or fix the data")
    return mapping


def read_label_names(cfg: DataConfig, base_dir: Path) -> list[str] | None:
    """The class names of `data.label_names`, or of `data.label_names_file`: one `ID NAME` per
    line (TweetEval's mapping.txt, tab or space separated) or one name per line in id order."""
    if cfg.label_names is not None or cfg.label_names_file is None:
        return cfg.label_names
    path = _local_path(base_dir, cfg.label_names_file)
    if not path.is_file():
        raise DataError(f"data.label_names_file: file {str(path)!r} does not exist; point it at "
                        "a file with one `ID<tab>NAME` (or one name) per line")
    try:  # utf-8-sig: a byte-order mark must not become part of the first name
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, "data.label_names_file", err.start, err.object[err.start]) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    pairs = [line.split(None, 1) for line in lines]
    if lines and all(len(p) == 2 and p[0].isdigit() for p in pairs):
        by_id = {int(i): name.strip() for i, name in pairs}
        if sorted(by_id) != list(range(len(lines))):
            raise DataError(
                f"data.label_names_file: {str(path)!r} gives ids {sorted(by_id)}; the ids must "
                f"be 0..{len(lines) - 1}, each once")
        names = [by_id[i] for i in range(len(lines))]
    else:
        names = lines
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"data.label_names_file: {str(path)!r} names {names}; give at least two "
                        "classes, each once")
    return names


def _positive_label_id(cfg: DataConfig, label_names: list[str]) -> int | None:
    if cfg.positive_label is None:
        return None
    if len(label_names) != 2:
        raise DataError(
            f"data.positive_label: {cfg.positive_label!r} is for binary tasks, but the data has "
            f"{len(label_names)} classes {label_names}; drop positive_label (macro eval_f1 and "
            "the per-class eval_f1_<label> are reported anyway)")
    if cfg.positive_label not in label_names:
        raise DataError(f"data.positive_label: {cfg.positive_label!r} is not a class of the "
                        f"data; use one of {label_names}")
    return label_names.index(cfg.positive_label)


def _generation_sample(cfg: DataConfig, tokenizer: Any, rows: list[dict[str, Any]],
                       num_examples: int, split: str) -> list[dict[str, Any]]:
    """A seeded sample of rows whose completion has a final answer: prompt ids and answer."""
    from trainables.metrics import final_answer

    assert cfg.prompt_template is not None
    answered = [(r, final_answer(cfg.completion_template.format(**r))) for r in rows]
    candidates = [(r, a) for r, a in answered if a is not None]
    if not candidates:
        raise DataError(
            f"train.generation_eval: no {split} completion has a final answer `#### ANSWER` "
            f"(data.completion_template {cfg.completion_template!r}); exact_match_final_answer "
            "needs GSM8K-style completions, or drop train.generation_eval")
    chosen = sorted(random.Random(cfg.split_seed).sample(range(len(candidates)),
                                                         min(num_examples, len(candidates))))
    return [{"prompt_ids": tokenizer(cfg.prompt_template.format(**candidates[i][0]),
                                     add_special_tokens=False)["input_ids"],
             "answer": candidates[i][1]} for i in chosen]


def prepare_data(cfg: DataConfig, task: Task, tokenizer: Any, base_dir: Path,
                 tokenize: Collection[str] = ("train", "validation", "test"),
                 generation: GenerationEvalConfig | None = None, *,
                 stored: bool = False) -> PreparedData:
    """Read, check and tokenize the splits. `tokenize` names the splits to tokenize (the others
    come back empty): scoring a finished sweep needs validation and test, not train. Every split
    is still read, so the validation carve-out and the label ids are the sweep's own.
    `generation` (train.generation_eval) also samples the prompts generated for. `stored`: the
    data of a sweep that has run (`read_splits`); the label checks are skipped too."""
    uncapped = _uncapped_splits(cfg, base_dir, task, stored)
    splits = cap_splits(cfg, uncapped)
    for name, rows in splits.items():
        check_columns(cfg, task, rows, name)
    names = read_label_names(cfg, base_dir) if task == "sequence_classification" else None
    if task == "sequence_classification" and not stored:
        for warning in check_labels(cfg, splits, uncapped, names):
            log.warning("%s", warning)
    wanted = {name: rows for name, rows in splits.items() if name in tokenize}
    if task == "causal_lm":
        tokenized = {name: _tokenize_causal(cfg, tokenizer, rows) for name, rows in wanted.items()}
        num_labels, label_names, positive_label_id = None, None, None
    else:
        mapping, label_names = _label_ids(splits, cfg.label_column, names)
        num_labels = len(label_names)
        positive_label_id = _positive_label_id(cfg, label_names)
        tokenized = {}
        for name, rows in wanted.items():
            enc = tokenizer(
                [str(r[cfg.text_column]) for r in rows], truncation=True, max_length=cfg.max_length
            )["input_ids"]
            key = ((lambda v: v) if cfg.label_names or cfg.label_names_file
                   or isinstance(next(iter(mapping)), int) else str)
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
    sampled = {name: _generation_sample(cfg, tokenizer, wanted[name], generation.num_examples,
                                        name)
               for name in ("validation", "test")
               if generation is not None and task == "causal_lm" and name in wanted}
    return PreparedData(
        task=task,
        train=tokenized.get("train", []),
        validation=tokenized.get("validation", []),
        test=tokenized.get("test", []),
        num_labels=num_labels,
        label_names=label_names,
        positive_label_id=positive_label_id,
        generation_validation=sampled.get("validation", []),
        generation_test=sampled.get("test", []),
        raw_train_texts=texts_of(cfg, task, splits["train"]),
        raw_validation_texts=texts_of(cfg, task, splits["validation"]),
        raw_test_texts=texts_of(cfg, task, splits["test"]) if "test" in splits else [],
    )
