"""The bad-input catalog (docs/bad-inputs.md): what a user writes by mistake, for every config
field, data file and cluster setting, and the error they get before any GPU time is spent.

Each case names the field path and the bad value, and the message must carry both (and the
fix). Config cases go through `load_config`; data and model cases through `build_plan` on a
tiny model (the checks `sweep validate --no-cluster` runs); cluster cases through `cluster.jobs`
and the `cluster.local` CLI without starting Ray. CPU-only, no Ray, well under a minute.

Every bad-input case here failed on the code before the catalog; the `accepted` ones (what looks
wrong but is meant) passed before and must keep passing. Mistakes that were already refused
(ranges, literals, unknown keys...) are tested in `test_config_validation.py`,
`test_bad_inputs.py` and `tests/trainables/test_data_errors.py`; the catalog lists them too.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import DATES, lm_config

from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config
from orchestrator.run.preflight import build_plan

LR = "train.learning_rate"
LOG_LR = {"type": "loguniform", "low": 1e-4, "high": 3e-2}


def _space(**dims: Any) -> dict[str, Any]:
    """`_space(train__batch_size={...})` -> `{"train.batch_size": {...}}`."""
    return {key.replace("__", "."): dim for key, dim in dims.items()}


# --- config fields: (id, patch for make_raw, fragments: field path, bad value, fix) -----------

CONFIG_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    # numbers that are not numbers
    ("epochs-inf", {"train": {"epochs": math.inf}}, ["train.epochs", "finite number", "inf"]),
    ("lora-alpha-inf", {"lora": {"alpha": math.inf}}, ["lora.alpha", "finite number", "inf"]),
    ("max-grad-norm-inf", {"train": {"max_grad_norm": math.inf}},
     ["train.max_grad_norm", "finite number", "null disables"]),
    ("adam-epsilon-nan", {"train": {"adam_epsilon": math.nan}},
     ["train.adam_epsilon", "finite number", "nan"]),
    ("cpus-inf", {"resources": {"cpus_per_trial": math.inf}},
     ["resources.cpus_per_trial", "finite number", "inf"]),
    ("stall-timeout-inf", {"stall_timeout_s": math.inf},
     ["stall_timeout_s", "finite number", "null waits forever"]),
    ("range-bound-inf", {"search_space": _space(train__weight_decay={
        "type": "uniform", "low": 0.0, "high": math.inf})},
     ["search_space.train.weight_decay", "finite number", "inf"]),
    ("max-grad-norm-false", {"train": {"max_grad_norm": False}},
     ["train.max_grad_norm", "false is a yes/no value", "write a number", "null"]),
    ("keep-top-k-false", {"keep_top_k_trials": False},
     ["keep_top_k_trials", "false is a yes/no value", "null"]),
    ("batch-size-true", {"train": {"batch_size": True}},
     ["train.batch_size", "true is a yes/no value", "write a number"]),
    # seeds hyperopt / torch refuse (negative train and split seeds are fine: see ACCEPTED)
    ("search-seed-negative", {"search": {"seed": -1}},
     ["search.seed", "greater than or equal to 0", "got -1"]),
    ("train-seed-too-big", {"train": {"seed": 2**64}},
     ["train.seed", str(2**64), "outside -2**46..2**46", "seed * 100003 + epoch",
      "use a smaller seed"]),
    ("train-seed-too-negative", {"train": {"seed": -2**60}},
     ["train.seed", str(-2**60), "outside -2**46..2**46"]),
    # paths and names
    ("model-path-empty", {"model": {"path": " "}},
     ["model.path", "is empty", "hub id", "pkg://"]),
    ("model-path-is-gguf-file", {"model": {"path": "/models/smol/SmolLM2.Q4_1.gguf"}},
     ["model.path", "'/models/smol/SmolLM2.Q4_1.gguf' is a GGUF file",
      "model.path: /models/smol", "model.gguf_file: SmolLM2.Q4_1.gguf"]),
    ("data-train-empty", {"data": {"train": ""}}, ["data.train", "is empty", ".jsonl"]),
    ("data-text-label-pair-empty", {"data": {"train": {"text": "t.txt", "labels": ""}}},
     ["data.train.labels", "is empty"]),
    ("storage-path-empty", {"storage_path": ""},
     ["storage_path", "is empty", "s3://bucket/prefix"]),
    ("storage-path-one-slash", {"storage_path": "s3:/bucket/runs"},
     ["storage_path", "'s3:/bucket/runs'", "local folder named 's3:'", "s3://bucket/runs"]),
    # data settings that would be ignored or contradict each other
    ("hub-config-without-hub-dataset", {"data": {"hub_config": "emotion"}},
     ["data.hub_config", "'emotion'", "data.hub_dataset is not", "set data.hub_dataset"]),
    ("completion-template-without-prompt", {"data": {"completion_template": " {answer}"}},
     ["data.completion_template", "' {answer}'", "data.prompt_template is not",
      "data.text_column", "set data.prompt_template"]),
    ("completion-template-without-field",
     {"data": {"prompt_template": "Q: {q}", "completion_template": " yes"}},
     ["data.completion_template", "' yes'", "no {column} field", "same completion",
      "' {answer}'"]),
    ("prompt-template-for-classification",
     {"task": "sequence_classification", "metric": "eval_f1",
      "data": {"prompt_template": "Review: {text}"}},
     ["data.prompt_template", "'Review: {text}'", "read only by causal_lm",
      "data.text_column"]),
    ("same-file-train-and-validation",
     {"data": {"train": "rows.jsonl", "validation": "./rows.jsonl"}},
     ["data.validation", "'./rows.jsonl'", "same file as data.train", "held-out"]),
    ("same-file-train-and-test", {"data": {"train": "rows.jsonl", "test": "rows.jsonl"}},
     ["data.test", "'rows.jsonl'", "same file as data.train", "held-out"]),
    # lora.target_modules written as one string
    ("target-modules-typo", {"lora": {"target_modules": "all_linear"}},
     ["lora.target_modules", "'all_linear'", "did you mean 'all-linear'?", "a list"]),
    ("target-modules-single-name", {"lora": {"target_modules": "q_proj"}},
     ["lora.target_modules", "'q_proj'", "[q_proj]"]),
    # a key in the wrong section
    ("learning-rate-at-top-level", {"learning_rate": 3e-4},
     ["learning_rate: unknown key", "train.learning_rate"]),
    ("batch-size-under-lora", {"lora": {"batch_size": 8}},
     ["lora.batch_size: unknown key", "train.batch_size"]),
    ("metric-under-train", {"train": {"metric": "eval_loss"}},
     ["train.metric: unknown key", "top level"]),
    # keys the user capitalised (was an IndexError traceback / "belongs at data.train")
    ("section-capitalised", {"Train": {"max_steps": 5}},
     ["Train: unknown key", "did you mean 'train'?"]),
    ("key-capitalised", {"train": {"LR": 1}},
     ["train.LR: unknown key", "learning_rate"]),
    ("text-label-pair-key-capitalised",
     {"data": {"train": {"text": "t.txt", "labels": "l.txt", "Labels": "x.txt"}}},
     ["data.train.Labels: unknown key", "did you mean 'labels'?"]),
    ("positive-label-yes-no", {"task": "sequence_classification", "metric": "eval_f1",
                               "data": {"positive_label": True}},
     ["data.positive_label", "true is a yes/no value", "positive_label: 1"]),
    # search space written the wrong way
    ("dimension-type-typo",
     {"search_space": {LR: {"type": "log_uniform", "low": 1e-5, "high": 1e-3}}},
     ["search_space.train.learning_rate", "unknown type 'log_uniform'",
      "did you mean 'loguniform'?", "choice"]),
    ("dimension-without-type", {"search_space": {LR: {"low": 1e-5, "high": 1e-3}}},
     ["search_space.train.learning_rate", "needs a `type`", "loguniform"]),
    ("dimension-is-a-plain-value", {"search_space": {LR: 1e-4}},
     ["search_space.train.learning_rate", "0.0001 is not a dimension", "set train.learning_rate"]),
    ("dimension-is-a-plain-list", {"search_space": {LR: [1e-4, 3e-4]}},
     ["search_space.train.learning_rate", "[0.0001, 0.0003] is not a dimension",
      "{type: choice, values: [0.0001, 0.0003]}"]),
    ("uniform-on-integer-field",
     {"search_space": _space(train__batch_size={"type": "uniform", "low": 4, "high": 16})},
     ["search_space.train.batch_size", "uniform samples fractional values",
      "whole numbers", "randint"]),
    ("loguniform-on-lora-r",
     {"search_space": _space(lora__r={"type": "loguniform", "low": 4, "high": 64})},
     ["search_space.lora.r", "loguniform samples fractional values", "choice"]),
    ("quniform-fractional-q-on-integer-field",
     {"search_space": _space(train__batch_size={
         "type": "quniform", "low": 4, "high": 16, "q": 0.5})},
     ["search_space.train.batch_size", "q=0.5", "whole numbers", "q: 1"]),
    ("quniform-q-wider-than-range",
     {"search_space": _space(train__weight_decay={
         "type": "quniform", "low": 0.0, "high": 0.1, "q": 0.5})},
     ["search_space.train.weight_decay.q", "0.5", "high - low = 0.1", "smaller q"]),
    # search algorithm settings
    ("initial-points-cover-every-trial", {"search": {"n_initial_points": 10}, "num_samples": 4},
     ["search.n_initial_points", "10", "num_samples (4)", "never learns",
      "search.algorithm: random"]),
    ("initial-points-with-random-search",
     {"search": {"algorithm": "random", "n_initial_points": 4}},
     ["search.n_initial_points", "4", "search.algorithm: random", "drop it"]),
    ("point-value-not-among-choices",
     {"search_space": _space(lora__r={"type": "choice", "values": [4, 8]}),
      "search": {"points_to_evaluate": [{"lora.r": 16}]}},
     ["search.points_to_evaluate[0].lora.r", "16", "not one of the choice values [4, 8]"]),
    ("point-value-outside-range", {"search": {"points_to_evaluate": [{LR: 0.5}]}},
     ["search.points_to_evaluate[0].train.learning_rate", "0.5",
      "outside the searched range", "1e-05", "0.001"]),
    ("point-missing-a-dimension-with-hyperopt",
     {"search_space": {LR: LOG_LR, "lora.r": {"type": "choice", "values": [4, 8]}},
      "search": {"points_to_evaluate": [{"lora.r": 8}]}},
     ["search.points_to_evaluate[0]", "['train.learning_rate']", "hyperopt needs"]),
    # budget and scheduler
    ("eval-every-above-max-steps", {"train": {"max_steps": 20, "eval_every_steps": 50}},
     ["train.eval_every_steps", "50", "train.max_steps (20)", "evaluates only once",
      "eval_every_steps <= 20"]),
    ("eval-every-above-searched-max-steps",
     {"train": {"eval_every_steps": 50},
      "search_space": {LR: LOG_LR, "train.max_steps": {"type": "choice", "values": [20, 200]}}},
     ["train.eval_every_steps", "50", "smallest train.max_steps in search_space (20)"]),
    ("grace-period-above-max-t", {"scheduler": {"grace_period": 100, "max_t": 60}},
     ["scheduler.grace_period", "100", "scheduler.max_t (60)", "grace_period <= max_t"]),
    ("grace-period-above-max-steps",
     {"train": {"max_steps": 100, "eval_every_steps": 10}, "scheduler": {"grace_period": 200}},
     ["scheduler.grace_period", "200", "train.max_steps (100)", "never stop a trial",
      "(--set scheduler.grace_period=20)", "(--set scheduler.type=fifo)"]),
    ("max-t-below-eval-every", {"scheduler": {"max_t": 10}},
     ["scheduler.max_t", "10", "train.eval_every_steps (50)", "first evaluation"]),
    ("median-needs-more-trials-than-run",
     {"scheduler": {"type": "median", "min_samples_required": 10}, "num_samples": 4},
     ["scheduler.min_samples_required", "10", "num_samples (4)", "never"]),
    ("pbt-population-of-one",
     {"scheduler": {"type": "pbt"}, "search": {"algorithm": "random"}, "num_samples": 1},
     ["num_samples", "1", "scheduler.type: pbt", "num_samples >= 2"]),
    ("pbt-interval-below-eval-every",
     {"scheduler": {"type": "pbt", "perturbation_interval": 10}, "search": {"algorithm": "random"}},
     ["scheduler.perturbation_interval", "10", "train.eval_every_steps (50)",
      "perturbation_interval >= 50"]),
    # resources the config alone rules out (checked even with `validate --no-cluster`)
    ("fp16-without-gpu", {"train": {"precision": "fp16"}},
     ["train.precision", "fp16 needs a GPU", "resources.gpus_per_trial is 0", "bf16"]),
    ("fractional-gpus-above-one", {"resources": {"gpus_per_trial": 1.5}},
     ["resources.gpus_per_trial", "1.5", "whole number", "workers_per_trial"]),
    # quality checks
    ("refuse-on-leakage-without-the-check",
     {"quality": {"check_leakage": False, "refuse_on_leakage": True}},
     ["quality.refuse_on_leakage", "quality.check_leakage", "set check_leakage: true"]),
]


@pytest.mark.parametrize(("patch", "fragments"),
                         [pytest.param(p, f, id=i) for i, p, f in CONFIG_CASES])
def test_bad_config_value(make_raw, config_error, mentions, patch: dict[str, Any],
                          fragments: list[str]) -> None:
    error = config_error(make_raw(**patch))
    mentions(str(error), *fragments)
    assert error.problems


def test_a_capitalised_section_given_to_set(make_raw, config_error, mentions) -> None:
    error = config_error(make_raw(), ["Train.max_steps=5"])
    mentions(str(error), "Train: unknown key", "did you mean 'train'?")


# Options the chosen scheduler type never reads: a warning (as Ray Tune would just not pass
# them), so `--set scheduler.type=fifo` on a config tuned for asha runs.
IGNORED_SCHEDULER_OPTIONS = [
    ("option-of-another-scheduler", {"scheduler": {"type": "median", "reduction_factor": 2}},
     ["scheduler.reduction_factor: 2.0 is ignored", "only asha and hyperband",
      "scheduler.type is median"]),
    ("pbt-option-with-asha", {"scheduler": {"perturbation_interval": 100}},
     ["scheduler.perturbation_interval: 100 is ignored", "only pbt", "scheduler.type is asha"]),
    ("grace-period-with-fifo", {"scheduler": {"type": "fifo", "grace_period": 100}},
     ["scheduler.grace_period: 100 is ignored", "only asha, median and pbt",
      "scheduler.type is fifo"]),
]


@pytest.mark.parametrize(("patch", "fragments"),
                         [pytest.param(p, f, id=i) for i, p, f in IGNORED_SCHEDULER_OPTIONS])
def test_an_option_the_scheduler_never_reads_is_a_warning(
        make_config, mentions, caplog: pytest.LogCaptureFixture, patch: dict[str, Any],
        fragments: list[str]) -> None:
    with caplog.at_level(logging.WARNING, logger="orchestrator.config.loading"):
        make_config(**patch)
    mentions(caplog.text, *fragments, "drop it")


# --- data files and model folders, through the preflight (`sweep validate --no-cluster`) -------

Make = Callable[[Path, Path, Path], dict[str, Any]]  # (tmp_path, tiny lm, tiny encoder) -> raw


def _write(path: Path, text: str | bytes, encoding: str = "utf-8") -> str:
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return str(path)


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def _sft(tmp: Path, lm: Path, **data: Any) -> dict[str, Any]:
    raw = lm_config(lm)
    raw["data"].update(data)
    return raw


def _plain_lm(tmp: Path, lm: Path, rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    raw = _sft(tmp, lm, train=_jsonl(tmp / name, rows), validation=None)
    del raw["data"]["prompt_template"], raw["data"]["completion_template"]
    return raw


ROWS = [{"text": f"it was {['bad', 'good'][i % 2]} {i}", "label": i % 2} for i in range(40)]


def _cls(tmp: Path, enc: Path, train: Any = None, **data: Any) -> dict[str, Any]:
    train = train if train is not None else _jsonl(tmp / "train.jsonl", ROWS)
    return lm_config(enc, task="sequence_classification", metric="eval_f1",
                     data={"train": train, "max_length": 32, **data})


def _cls_rows(rows: list[dict[str, Any]]) -> Make:
    return lambda tmp, lm, enc: _cls(tmp, enc, _jsonl(tmp / "rows.jsonl", rows))


def _folder(path: Path) -> str:
    path.mkdir()
    return str(path)


def _link(link: Path, target: Path) -> str:
    link.symlink_to(target)
    return str(link)


def _copy_model(src: Path, dst: Path, keep: Callable[[str], bool]) -> str:
    dst.mkdir()
    for f in src.iterdir():
        if keep(f.name):
            (dst / f.name).write_bytes(f.read_bytes())
    return str(dst)


LATIN1_ROWS = "".join(json.dumps({"date": "café", "words": "w"}, ensure_ascii=False) + "\n"
                      for _ in range(20))

PLAN_CASES: list[tuple[str, Make, list[str]]] = [
    ("data-file-is-a-folder",
     lambda tmp, lm, enc: _sft(tmp, lm, train=_folder(tmp / "train.jsonl")),
     ["data.train", "train.jsonl'", "is a folder, not a file"]),
    ("jsonl-not-utf8",
     lambda tmp, lm, enc: _sft(tmp, lm, train=_write(tmp / "l1.jsonl", LATIN1_ROWS, "latin-1")),
     ["data.train", "l1.jsonl'", "not UTF-8 text", "byte 0xe9", "re-save it as UTF-8"]),
    ("csv-not-utf8",
     lambda tmp, lm, enc: _cls(tmp, enc, _write(
         tmp / "l1.csv", "text,label\n" + "".join(f"café {i},{i % 2}\n" for i in range(40)),
         "latin-1")),
     ["data.train", "l1.csv'", "not UTF-8 text", "re-save it as UTF-8"]),
    ("text-file-not-utf8",
     lambda tmp, lm, enc: _cls(tmp, enc, {
         "text": _write(tmp / "t.txt", "".join(f"café {i}\n" for i in range(40)), "latin-1"),
         "labels": _write(tmp / "l.txt", "".join(f"{i % 2}\n" for i in range(40)))}),
     ["data.train.text", "t.txt'", "not UTF-8 text", "re-save it as UTF-8"]),
    ("json-object-of-columns",
     lambda tmp, lm, enc: _sft(tmp, lm, train=_write(tmp / "cols.json", json.dumps(
         {"date": [f"d{i}" for i in range(20)], "words": ["w"] * 20}))),
     ["data.train", "cols.json'", "one JSON object whose values are lists",
      "array of row objects", ".jsonl"]),
    ("json-rows-wrapped-in-an-object",
     lambda tmp, lm, enc: _sft(tmp, lm, train=_write(tmp / "wrapped.json", json.dumps(
         {"data": [{"date": f"d{i}", "words": "w"} for i in range(20)]}))),
     ["data.train", "wrapped.json'", "one JSON object whose values are lists"]),
    ("same-file-as-train-through-a-link",
     lambda tmp, lm, enc: _sft(tmp, lm, validation=_link(tmp / "val.jsonl", DATES / "train.jsonl")),
     ["data.validation", "val.jsonl'", "same file as data.train", "held-out"]),
    ("column-missing-in-later-rows",
     lambda tmp, lm, enc: _sft(tmp, lm, train=_jsonl(
         tmp / "later.jsonl", [{"date": "a", "words": "b"}] * 15 + [{"date": "c"}] * 5)),
     ["data.train", "row 16", "'words'", "5 rows", "data.completion_template"]),
    ("label-null", _cls_rows(ROWS + [{"text": "zzz", "label": None}]),
     ["data.train", "row 41", "'label'", "data.label_column"]),
    ("label-missing-in-some-rows", _cls_rows(ROWS + [{"text": "zzz"}] * 3),
     ["data.train", "row 41", "'label'", "3 rows"]),
    ("text-is-a-list-of-messages",
     lambda tmp, lm, enc: _plain_lm(tmp, lm, [{"text": [{"role": "user", "content": "hi"}]}] * 40,
                                    "chat.jsonl"),
     ["data.train", "column 'text'", "data.text_column", "a list", "row 1"]),
    ("template-field-is-an-object",
     lambda tmp, lm, enc: _sft(tmp, lm, train=_jsonl(
         tmp / "nested.jsonl", [{"date": {"y": 2030}, "words": "w"}] * 40)),
     ["data.train", "column 'date'", "prompt_template", "a dict", "row 1"]),
    ("label-negative", _cls_rows(ROWS + [{"text": "zzz", "label": -1}]),
     ["data.train", "label -1", "row 41", "0..N-1"]),
    ("labels-one-based", _cls_rows([{"text": f"t{i}", "label": 1 + i % 5} for i in range(40)]),
     ["data.label_column", "0..N-1", "no example of [0]", "renumber"]),
    ("labels-with-a-gap", _cls_rows([{"text": f"t{i}", "label": 2 * (i % 2)} for i in range(40)]),
     ["data.label_column", "no example of [1]", "[0, 2]"]),
    ("a-single-class", _cls_rows([{"text": f"t{i}", "label": 0} for i in range(40)]),
     ["data.train", "label 0", "at least 2 classes", "data.label_column"]),
    ("validation-label-never-in-train",
     lambda tmp, lm, enc: _cls(tmp, enc, validation=_jsonl(
         tmp / "val.jsonl", [{"text": "x", "label": 5}] * 4)),
     ["data.validation", "label 5", "row 1", "never occurs in data.train", "[0, 1]"]),
    ("text-label-never-in-train",
     lambda tmp, lm, enc: _cls(
         tmp, enc, _jsonl(tmp / "s.jsonl", [{"text": f"t{i}", "label": ["neg", "pos"][i % 2]}
                                            for i in range(40)]),
         test=_jsonl(tmp / "st.jsonl", [{"text": "x", "label": "positive"}] * 4)),
     ["data.test", "label 'positive'", "never occurs in data.train", "'neg'", "'pos'"]),
    ("labels-mix-numbers-and-text",  # JSON/CSV readers unify a column's type; line files not
     lambda tmp, lm, enc: _cls(tmp, enc, {
         "text": _write(tmp / "t.txt", "".join(f"t{i}\n" for i in range(40))),
         "labels": _write(tmp / "l.txt", "".join(["0\n", "pos\n"][i % 2] for i in range(40)))}),
     ["data.label_column", "mix numbers and text", "0", "'pos'", "one way"]),
    ("every-text-empty", _cls_rows([{"text": "", "label": i % 2} for i in range(40)]),
     ["data.train", "column 'text'", "data.text_column", "empty in every row"]),
    ("every-plain-lm-text-empty",
     lambda tmp, lm, enc: _plain_lm(tmp, lm, [{"text": " "}] * 40, "blank.jsonl"),
     ["data.train", "column 'text'", "empty in every row"]),
    ("every-completion-empty",
     lambda tmp, lm, enc: _sft(tmp, lm, train=_jsonl(
         tmp / "nocomp.jsonl", [{"date": f"d{i}", "words": ""} for i in range(40)])),
     ["data.completion_template", "' {words}'", "empty", "every train row"]),
    ("hub-dataset-unreachable",
     lambda tmp, lm, enc: _sft(tmp, lm, hub_dataset="nobody/no-such-set", train="train",
                               validation=None),
     ["data.train", "hub dataset 'nobody/no-such-set'", "split 'train'", "HF_TOKEN",
      "local files"]),
    ("model-path-is-a-file",
     lambda tmp, lm, enc: lm_config(lm / "config.json"),
     ["model.path", "config.json'", "is a file, not a folder"]),
    ("model-folder-without-weights",
     lambda tmp, lm, enc: lm_config(
         Path(_copy_model(lm, tmp / "noweights", lambda n: "safetensors" not in n))),
     ["model.path", "noweights'", "no weights", "save_pretrained"]),
    ("model-folder-without-tokenizer",
     lambda tmp, lm, enc: lm_config(Path(_copy_model(
         lm, tmp / "notok", lambda n: n in ("config.json", "model.safetensors")))),
     ["model.path", "notok'", "tokenizer", "tokenizer.save_pretrained"]),
]


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub that does not answer for `nobody/...` (this machine is offline anyway; this makes
    it certain); local files are read as usual."""
    import datasets

    real = datasets.load_dataset

    def load_dataset(path: str, *args: Any, **kwargs: Any) -> Any:
        if path.startswith("nobody/"):
            raise ConnectionError(f"Couldn't reach {path!r} on the Hub")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


@pytest.mark.parametrize(("make", "fragments"),
                         [pytest.param(m, f, id=i) for i, m, f in PLAN_CASES])
def test_bad_data_or_model(tmp_path: Path, tiny_lm_dir: Path, tiny_encoder_dir: Path,
                           offline_hub: None, make: Make, fragments: list[str]) -> None:
    config = load_config(make(tmp_path, tiny_lm_dir, tiny_encoder_dir))
    with pytest.raises(ConfigError) as info:
        build_plan(config)
    message = str(info.value)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message lacks {missing}:\n{message}"


def test_a_local_looking_model_path_says_no_folder_is_there_either(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`models/tiny` (no `./`) that is not a folder is tried as a hub id; the message says both."""
    import transformers

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", unreachable)
    raw = lm_config(tmp_path)
    raw["model"]["path"] = "models/tiny-typo"
    raw["base_dir"] = str(tmp_path)
    with pytest.raises(ConfigError) as info:
        build_plan(load_config(raw))
    message = str(info.value)
    assert "hub model 'models/tiny-typo' is not reachable" in message
    assert f"no folder {str(tmp_path / 'models/tiny-typo')!r}" in message


# --- config files --------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "fragments"), [
    pytest.param(lambda tmp: _folder(tmp / "sweep.yaml"),
                 ["sweep.yaml'", "is a folder", "YAML file"], id="config-path-is-a-folder"),
    pytest.param(lambda tmp: _write(tmp / "l1.yaml", "task: causal_lm  # café\n", "latin-1"),
                 ["l1.yaml", "not UTF-8 text", "byte 0xe9", "re-save it as UTF-8"],
                 id="config-not-utf8"),
])
def test_bad_config_file(tmp_path: Path, config_error, mentions,
                         make: Callable[[Path], str], fragments: list[str]) -> None:
    mentions(str(config_error(make(tmp_path))), *fragments)


# --- cluster settings (no Ray is started: each is refused before connecting) ------------------


@pytest.mark.parametrize(("address", "fragments"), [
    pytest.param("ray://127.0.0.1:10001", ["'ray://127.0.0.1:10001'", "Ray Client",
                                           "http://HEAD:8265"], id="ray-client-address"),
    pytest.param("http//127.0.0.1:8265", ["'http//127.0.0.1:8265'", "http://HEAD:8265"],
                 id="scheme-without-colon"),
    pytest.param("127.0.0.1", ["'127.0.0.1'", "no port", "http://127.0.0.1:8265"],
                 id="host-without-port"),
    pytest.param("ftp://head:8265", ["'ftp://head:8265'", "http://HEAD:8265"],
                 id="other-scheme"),
])
def test_bad_jobs_address(address: str, fragments: list[str]) -> None:
    from cluster import jobs

    with pytest.raises(jobs.ClusterError) as info:
        jobs.list_jobs(address)
    missing = [f for f in fragments if f not in str(info.value)]
    assert not missing, f"message lacks {missing}:\n{info.value}"


def test_auth_token_file_that_does_not_exist(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster import jobs

    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(jobs.ClusterError) as info:
        jobs.auth_headers()
    message = str(info.value)
    assert "RAY_AUTH_TOKEN_PATH" in message and "no-token" in message
    assert "does not exist" in message and "cluster.local up" in message


@pytest.mark.parametrize(("args", "fragment"), [
    pytest.param(["--workers", "-1"], "'--workers': -1 is not in the range x>=0",
                 id="negative-workers"),
    pytest.param(["--cpus-per-node", "0"], "'--cpus-per-node': 0.0 is not in the range x>0",
                 id="zero-cpus-per-node"),
])
def test_bad_local_cluster_sizes(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                 fragment: str) -> None:
    from click.testing import CliRunner

    from cluster import local

    def never(*a: Any, **k: Any) -> Any:
        raise AssertionError("start() must not run for a refused size")

    monkeypatch.setattr(local, "start", never)
    result = CliRunner().invoke(local.main, ["up", *args])
    assert result.exit_code == 2 and fragment in result.output, result.output


# --- looks wrong, is accepted (and what it means) ------------------------------------------

ACCEPTED: list[tuple[str, dict[str, Any], Callable[[Any], bool]]] = [
    ("quoted-number", {"train": {"learning_rate": "1e-4"}},
     lambda c: c.train.learning_rate == 1e-4),
    ("whole-float-for-an-integer", {"train": {"batch_size": 8.0}},
     lambda c: c.train.batch_size == 8 and isinstance(c.train.batch_size, int)),
    ("empty-section-means-defaults", {"train": None, "lora": None},
     lambda c: c.train.batch_size == 8 and c.lora.r == 8),
    ("fractional-cpus", {"resources": {"cpus_per_trial": 0.5}},
     lambda c: c.resources.cpus_per_trial == 0.5),
    ("quniform-whole-q-on-integer-field",
     {"search_space": {LR: LOG_LR, "train.batch_size": {
         "type": "quniform", "low": 4, "high": 16, "q": 4}}},
     lambda c: c.search_space["train.batch_size"].q == 4),
    ("scheduler-option-of-its-own-type", {"scheduler": {"type": "pbt", "quantile_fraction": 0.5},
                                          "search": {"algorithm": "random"}},
     lambda c: c.scheduler.quantile_fraction == 0.5),
    ("partial-point-with-random-search",
     {"search": {"algorithm": "random", "points_to_evaluate": [{"lora.r": 8}]},
      "search_space": {LR: LOG_LR, "lora.r": {"type": "choice", "values": [4, 8]}}},
     lambda c: c.search.points_to_evaluate == [{"lora.r": 8}]),
    # random.Random takes any integer, numpy gets seed % 2**32, torch takes negative seeds
    ("split-seed-negative", {"data": {"split_seed": -3}}, lambda c: c.data.split_seed == -3),
    ("train-seed-negative", {"train": {"seed": -1}}, lambda c: c.train.seed == -1),
    ("positive-label-as-an-id", {"task": "sequence_classification", "metric": "eval_binary_f1",
                                 "data": {"positive_label": 1}},
     lambda c: c.data.positive_label == "1"),
]


@pytest.mark.parametrize(("patch", "check"), [pytest.param(p, c, id=i) for i, p, c in ACCEPTED])
def test_accepted(make_config, patch: dict[str, Any], check: Callable[[Any], bool]) -> None:
    assert check(make_config(**patch))


@pytest.mark.parametrize("name,content", [
    pytest.param("bom.jsonl", "\ufeff" + "".join(json.dumps({"text": f"t{i}", "label": i % 2})
                                                 + "\n" for i in range(40)), id="jsonl-bom"),
    pytest.param("bom.csv", "\ufefftext,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(40)),
                 id="csv-bom"),
    pytest.param("rows.json", json.dumps([{"text": f"t{i}", "label": i % 2} for i in range(40)]),
                 id="json-array"),
])
def test_accepted_data_files(tmp_path: Path, tiny_encoder_dir: Path, name: str,
                             content: str) -> None:
    plan = build_plan(load_config(_cls(tmp_path, tiny_encoder_dir, _write(tmp_path / name,
                                                                           content))))
    assert plan.data.num_labels == 2 and plan.data.label_names == ["0", "1"]


def test_text_label_files_with_a_bom_keep_integer_labels(tmp_path: Path,
                                                         tiny_encoder_dir: Path) -> None:
    """Notepad's UTF-8 BOM used to turn the first label into the text '\\ufeff0', a third
    class."""
    pair = {"text": _write(tmp_path / "t.txt", "\ufeff" + "".join(f"t{i}\n" for i in range(40))),
            "labels": _write(tmp_path / "l.txt", "\ufeff" + "".join(f"{i % 2}\n"
                                                                     for i in range(40)))}
    plan = build_plan(load_config(_cls(tmp_path, tiny_encoder_dir, pair)))
    assert plan.data.num_labels == 2 and plan.data.label_names == ["0", "1"]


def test_data_paths_may_start_with_home(tmp_path: Path, tiny_encoder_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`~/data/train.jsonl` used to be read as BASE_DIR/~/data/train.jsonl ("does not exist")."""
    monkeypatch.setenv("HOME", str(tmp_path))
    _jsonl(tmp_path / "train.jsonl", ROWS)
    plan = build_plan(load_config(_cls(tmp_path, tiny_encoder_dir, "~/train.jsonl")))
    assert plan.data.num_labels == 2


def test_a_list_given_to_set_for_target_modules_says_how_to_write_it(make_raw, config_error,
                                                                      mentions) -> None:
    error = config_error(make_raw(), ["lora.target_modules=q_proj,v_proj"])
    mentions(str(error), "lora.target_modules", "'q_proj,v_proj'", "e.g. [q_proj,v_proj]")
