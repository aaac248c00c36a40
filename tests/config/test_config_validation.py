"""`load_config` rejects every bad config with a message naming the field, the value and the fix.

Each case patches a minimal valid config (see conftest.py) and checks the message fragments a
user needs: the dotted field path, the bad value, and what to do instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config
from orchestrator.config.schema import Choice, SweepConfig

LR = "train.learning_rate"


def _space(**dims: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`_space(train__learning_rate={...})` -> `{"train.learning_rate": {...}}`."""
    return {key.replace("__", "."): dim for key, dim in dims.items()}


def _drop_model_path(raw: dict[str, Any]) -> dict[str, Any]:
    del raw["model"]["path"]
    return raw


THREE_NUMERIC = _space(train__learning_rate={"type": "loguniform", "low": 1e-5, "high": 1e-3},
                       train__weight_decay={"type": "uniform", "low": 0.0, "high": 0.1},
                       lora__r={"type": "randint", "low": 4, "high": 32},
                       lora__dropout={"type": "choice", "values": [0.0, 0.1]})

# (id, patch for make_raw, or a callable on the raw dict, fragments the message must contain)
BAD_CONFIGS: list[tuple[str, Any, list[str]]] = [
    ("unknown-top-level-key", {"metrc": "eval_loss"},
     ["metrc: unknown key", "did you mean 'metric'?"]),
    ("unknown-train-key", {"train": {"learning_rat": 1e-3}},
     ["train.learning_rat: unknown key", "did you mean 'learning_rate'?"]),
    ("unknown-data-key", {"data": {"validation_fracton": 0.1}},
     ["data.validation_fracton: unknown key", "did you mean 'validation_fraction'?"]),
    ("unknown-resources-key", {"resources": {"gpu_per_trial": 1}},
     ["resources.gpu_per_trial: unknown key", "did you mean 'gpus_per_trial'?"]),
    ("unknown-key-no-close-match-lists-valid", {"lora": {"rank": 4}},
     ["lora.rank: unknown key", "valid keys: r, alpha, dropout, target_modules"]),
    ("missing-model-path", _drop_model_path,
     ["model.path: required, but missing", "add it"]),
    ("missing-task", lambda raw: {k: v for k, v in raw.items() if k != "task"},
     ["task: required, but missing"]),
    ("range-low-above-high",
     {"search_space": _space(train__learning_rate={"type": "uniform", "low": 1e-3, "high": 1e-5})},
     ["search_space.train.learning_rate", "`low < high` must hold", "low=0.001, high=1e-05",
      "swap them"]),
    ("randint-low-equals-high",
     {"search_space": _space(train__batch_size={"type": "randint", "low": 4, "high": 4})},
     ["search_space.train.batch_size", "`low < high` must hold", "low=4, high=4"]),
    ("loguniform-low-zero",
     {"search_space": _space(train__learning_rate={"type": "loguniform", "low": 0, "high": 1e-3})},
     ["search_space.train.learning_rate", "loguniform needs low > 0", "low=0.0", "e.g. 1e-6"]),
    ("loguniform-low-negative",
     {"search_space": _space(
         train__weight_decay={"type": "loguniform", "low": -0.1, "high": 0.1})},
     ["search_space.train.weight_decay", "loguniform needs low > 0", "low=-0.1"]),
    ("unknown-dimension-type",
     {"search_space": _space(train__learning_rate={"type": "logunif", "low": 1e-5, "high": 1})},
     ["search_space.train.learning_rate", "'logunif'", "'loguniform'", "'choice'"]),
    ("negative-learning-rate", {"train": {"learning_rate": -1e-3}},
     ["train.learning_rate", "greater than 0", "got -0.001"]),
    ("zero-learning-rate", {"train": {"learning_rate": 0}},
     ["train.learning_rate", "greater than 0", "got 0"]),
    ("learning-rate-at-least-one", {"train": {"learning_rate": 3}},
     ["train.learning_rate", "less than 1", "got 3"]),
    ("negative-learning-rate-in-range",
     {"search_space": _space(train__learning_rate={"type": "uniform", "low": -1e-3, "high": 1e-3})},
     ["search_space.train.learning_rate.low", "-0.001 is not a valid train.learning_rate",
      "greater than 0"]),
    ("learning-rate-range-above-one",
     {"search_space": _space(train__learning_rate={"type": "uniform", "low": 0.1, "high": 2})},
     ["search_space.train.learning_rate.high", "2.0 is not a valid train.learning_rate",
      "less than 1"]),
    ("search-space-unknown-section",
     {"search_space": _space(optim__learning_rate={"type": "uniform", "low": 0.1, "high": 0.2})},
     ["search_space.optim.learning_rate", "['distill', 'lora', 'train']",
      "e.g. `train.learning_rate`"]),
    ("search-space-key-without-section",
     {"search_space": {"learning_rate": {"type": "uniform", "low": 0.1, "high": 0.2}}},
     ["search_space.learning_rate", "`section.field`"]),
    ("search-space-unknown-field",
     {"search_space": _space(train__learning_rat={"type": "uniform", "low": 0.1, "high": 0.2})},
     ["search_space.train.learning_rat", "train has no field 'learning_rat'",
      "did you mean 'learning_rate'?"]),
    ("search-space-unknown-lora-field",
     {"search_space": _space(lora__rank={"type": "choice", "values": [4, 8]})},
     ["search_space.lora.rank", "lora has no field 'rank'"]),
    ("choice-value-invalid-for-field",
     {"search_space": _space(lora__r={"type": "choice", "values": [0, 8]})},
     ["search_space.lora.r.values[0]", "0 is not a valid lora.r",
      "greater than or equal to 1"]),
    ("choice-value-wrong-literal",
     {"search_space": _space(train__lr_schedule={"type": "choice", "values": ["linear", "step"]})},
     ["search_space.train.lr_schedule.values[1]", "'step' is not a valid train.lr_schedule",
      "'cosine'"]),
    ("empty-choice", {"search_space": _space(lora__r={"type": "choice", "values": []})},
     ["search_space.lora.r.choice.values", "at least 1 item"]),
    ("grid-with-hyperopt",
     {"search_space": _space(lora__r={"type": "grid", "values": [4, 8]})},
     ["search.algorithm: hyperopt cannot sample `type: grid`", "use `type: choice`",
      "search.algorithm: grid"]),
    ("grid-with-optuna",
     {"search": {"algorithm": "optuna"},
      "search_space": _space(lora__r={"type": "grid", "values": [4, 8]})},
     ["search.algorithm: optuna cannot sample `type: grid`", "use `type: choice`"]),
    ("continuous-with-grid-search", {"search": {"algorithm": "grid"}},
     ["search.algorithm: grid needs discrete dimensions", "['train.learning_rate']",
      "`type: grid`", "search.algorithm: hyperopt"]),
    ("empty-search-space-with-hyperopt", {"search_space": {}},
     ["search_space: is empty", "hyperopt has nothing to search", "search.algorithm: random"]),
    ("empty-search-space-with-optuna", {"search": {"algorithm": "optuna"}, "search_space": {}},
     ["search_space: is empty", "optuna"]),
    ("grid-with-cmaes",
     {"search": {"algorithm": "cmaes"},
      "search_space": _space(train__learning_rate={"type": "loguniform", "low": 1e-5,
                                                   "high": 1e-3},
                             lora__r={"type": "grid", "values": [4, 8]})},
     ["search.algorithm: cmaes cannot sample `type: grid`", "use `type: choice`"]),
    ("grid-with-nsga2",
     {"search": {"algorithm": "nsga2"},
      "search_space": _space(lora__r={"type": "grid", "values": [4, 8]})},
     ["search.algorithm: nsga2 cannot sample `type: grid`"]),
    ("cmaes-with-only-choices",
     {"search": {"algorithm": "cmaes"},
      "search_space": _space(lora__r={"type": "choice", "values": [4, 8]})},
     ["search.algorithm: cmaes models numeric dimensions", "['lora.r']", "is a choice",
      "search.algorithm: nsga2"]),
    ("empty-search-space-with-cmaes", {"search": {"algorithm": "cmaes"}, "search_space": {}},
     ["search_space: is empty", "cmaes has nothing to search"]),
    ("population-size-without-generations", {"search": {"population_size": 4}},
     ["search.population_size: 4", "search.algorithm: hyperopt has no generations",
      "search.algorithm: cmaes or nsga2"]),
    ("population-size-fills-the-sweep",
     {"search": {"algorithm": "nsga2", "population_size": 8}, "num_samples": 8},
     ["search.population_size: 8 with num_samples: 8", "no trial for a second generation",
      "`population_size < num_samples` must hold", "num_samples >= 16"]),
    ("cmaes-default-population-fills-the-sweep",
     {"search": {"algorithm": "cmaes"}, "num_samples": 8, "search_space": THREE_NUMERIC},
     ["search.algorithm: cmaes with its default population_size, 7",
      "(4 + floor(3 ln 3) for 3 numeric dimensions)", "num_samples: 8",
      "after 1 start-up trial (search.n_initial_points)", "no trial for a second generation",
      "`n_initial_points + population_size < num_samples` must hold", "num_samples >= 15",
      "search.population_size: 6 or lower"]),
    ("nsga2-default-population-fills-the-sweep",
     {"search": {"algorithm": "nsga2"}, "num_samples": 2},
     ["search.algorithm: nsga2 with its default population_size, 2",
      "(num_samples / 4, at least 2), and num_samples: 2", "no trial for a second generation",
      "`population_size < num_samples` must hold", "num_samples >= 4",
      "search.algorithm: random"]),
    ("cmaes-start-up-and-population-fill-the-sweep",
     {"search": {"algorithm": "cmaes", "population_size": 4, "n_initial_points": 4},
      "num_samples": 8},
     ["search.population_size: 4 with num_samples: 8, after 4 start-up trials "
      "(search.n_initial_points), leaves no trial for a second generation",
      "num_samples >= 12", "search.population_size: 3 or lower"]),
    ("population-size-one", {"search": {"algorithm": "nsga2", "population_size": 1}},
     ["search.population_size", "greater than or equal to 2", "got 1"]),
    ("initial-points-with-nsga2", {"search": {"algorithm": "nsga2", "n_initial_points": 4}},
     ["search.n_initial_points: 4 does not apply to nsga2", "set search.population_size"]),
    ("pbt-with-cmaes", {"scheduler": {"type": "pbt"}, "search": {"algorithm": "cmaes"}},
     ["scheduler.type: pbt", "search.algorithm: cmaes", "set search.algorithm: random"]),
    ("metric-not-reported-by-task", {"metric": "eval_f1"},
     ["metric: 'eval_f1' is never reported by the causal_lm trainable",
      "'eval_loss'", "'eval_perplexity'", "'eval_token_accuracy'"]),
    ("metric-typo", {"metric": "eval_los"},
     ["metric: 'eval_los'", "did you mean 'eval_loss'?"]),
    ("classification-metric-typo",
     {"task": "sequence_classification", "metric": "eval_acc"},
     ["metric: 'eval_acc'", "sequence_classification", "did you mean 'eval_accuracy'?"]),
    ("mode-contradicts-metric", {"mode": "max"},
     ["mode: 'max'", "metric 'eval_loss'", "set mode: min"]),
    ("mode-contradicts-max-metric",
     {"task": "sequence_classification", "metric": "eval_f1", "mode": "min"},
     ["mode: 'min'", "metric 'eval_f1'", "set mode: max"]),
    ("bad-mode-literal", {"mode": "minimize"},
     ["mode", "'min' or 'max'", "got 'minimize'"]),
    ("pbt-with-hyperopt", {"scheduler": {"type": "pbt"}},
     ["scheduler.type: pbt", "search.algorithm: hyperopt", "set search.algorithm: random"]),
    ("pbt-with-optuna", {"scheduler": {"type": "pbt"}, "search": {"algorithm": "optuna"}},
     ["scheduler.type: pbt", "search.algorithm: optuna"]),
    ("pbt-perturbing-lora-r",
     {"scheduler": {"type": "pbt"}, "search": {"algorithm": "random"},
      "search_space": _space(lora__r={"type": "choice", "values": [4, 8]})},
     ["scheduler.type: pbt", "['lora.r']", "tensor shapes", "fix them in `lora`"]),
    ("pbt-without-search-space",
     {"scheduler": {"type": "pbt"}, "search": {"algorithm": "random"}, "search_space": {}},
     ["scheduler.type: pbt needs a search_space"]),
    ("asha-grace-below-eval-every",
     {"scheduler": {"grace_period": 10}, "train": {"eval_every_steps": 20}},
     ["scheduler.grace_period: 10", "train.eval_every_steps (20)", "grace_period >= 20"]),
    ("grace-period-zero", {"scheduler": {"grace_period": 0}},
     ["scheduler.grace_period", "greater than or equal to 1", "got 0"]),
    ("reduction-factor-one", {"scheduler": {"reduction_factor": 1}},
     ["scheduler.reduction_factor", "greater than 1", "got 1"]),
    ("unknown-scheduler", {"scheduler": {"type": "ashaa"}},
     ["scheduler.type", "'asha'", "'fifo'", "got 'ashaa'"]),
    ("unknown-search-algorithm", {"search": {"algorithm": "bayes"}},
     ["search.algorithm", "'hyperopt'", "got 'bayes'"]),
    ("validation-fraction-too-high", {"data": {"validation_fraction": 0.7}},
     ["data.validation_fraction", "less than 0.5", "got 0.7"]),
    ("validation-fraction-zero", {"data": {"validation_fraction": 0}},
     ["data.validation_fraction", "greater than 0", "got 0"]),
    ("bad-precision", {"train": {"precision": "fp8"}},
     ["train.precision", "'fp32', 'bf16' or 'fp16'", "got 'fp8'"]),
    ("bad-task", {"task": "seq2seq"},
     ["task", "'causal_lm' or 'sequence_classification'", "got 'seq2seq'"]),
    ("num-samples-zero", {"num_samples": 0},
     ["num_samples", "greater than or equal to 1", "got 0"]),
    ("negative-gpus", {"resources": {"gpus_per_trial": -1}},
     ["resources.gpus_per_trial", "greater than or equal to 0", "got -1"]),
]


@pytest.mark.parametrize(
    ("patch", "fragments"),
    [pytest.param(patch, fragments, id=case) for case, patch, fragments in BAD_CONFIGS],
)
def test_bad_dict_config_is_rejected_with_path_value_and_fix(
    make_raw, config_error, mentions, patch, fragments
):
    raw = patch(make_raw()) if callable(patch) else make_raw(**patch)

    error = config_error(raw)

    mentions(str(error), *fragments)
    assert str(error).startswith("Invalid sweep config (")
    assert error.problems, "ConfigError.problems must list the problems one by one"


def test_good_minimal_config_loads(make_config):
    config = make_config()

    assert config.task == "causal_lm"
    assert config.search.algorithm == "hyperopt"
    assert config.mode == "min"
    assert config.name is None and config.base_dir is None  # dict configs get no defaults


@pytest.mark.parametrize("algorithm", ["cmaes", "nsga2"])
def test_evolutionary_searchers_accept_mixed_spaces(make_config, algorithm):
    """A choice next to numeric dimensions is fine: NSGA-II crosses it over, CMA-ES samples it
    at random (README, Search)."""
    config = make_config(num_samples=16, search={"algorithm": algorithm, "population_size": 4},
                         search_space={LR: {"type": "loguniform", "low": 1e-5, "high": 1e-3},
                                       "lora.r": {"type": "choice", "values": [4, 8]}})

    assert config.search.algorithm == algorithm and config.search.population_size == 4


@pytest.mark.parametrize(("algorithm", "num_samples"), [("cmaes", 9), ("nsga2", 3)])
def test_evolutionary_sweep_with_one_trial_after_the_first_generation_loads(
        make_config, algorithm, num_samples):
    """The smallest sweeps the generation check lets through: cmaes, 1 start-up trial + its
    default population of 7 (3 numeric dimensions; the choice does not count) + 1; nsga2, its
    default population of 2 + 1."""
    config = make_config(num_samples=num_samples, search={"algorithm": algorithm},
                         search_space=THREE_NUMERIC)

    assert config.search.population_size is None and config.num_samples == num_samples


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_config_error_counts_and_lists_each_problem():
    error = ConfigError(["a: one", "b: two"], "x.yaml")

    assert str(error) == "Invalid x.yaml (2 problems):\n  - a: one\n  - b: two"
    assert error.problems == ["a: one", "b: two"]


def test_several_bad_fields_are_reported_at_once(make_raw, config_error, mentions):
    raw = make_raw(metrc="eval_loss", train={"learning_rat": 1e-3, "batch_size": 0})

    error = config_error(raw)

    assert len(error.problems) == 3, error.problems
    mentions(
        str(error), "(3 problems)", "metrc: unknown key", "train.learning_rat: unknown key",
        "train.batch_size",
    )


def test_several_cross_field_problems_are_reported_at_once(make_raw, config_error):
    raw = make_raw(metric="eval_f1", search_space={"lora.r": {"type": "grid", "values": [4, 8]}})

    error = config_error(raw)

    assert len(error.problems) == 2, error.problems


@pytest.mark.parametrize(
    ("patch", "fragments"),
    [
        pytest.param(
            {"search_space": {LR: {"type": "loguniform", "low": 1e-5, "hgh": 1e-3}}},
            ["search_space.train.learning_rate", "hgh: unknown key", "did you mean 'high'?"],
            id="search-space-dimension",
        ),
        pytest.param(
            {"data": {"train": {"text": "t.txt", "label": "l.txt"}}},
            ["data.train", "label: unknown key", "did you mean 'labels'?"],
            id="text-label-file-pair",
        ),
    ],
)
def test_unknown_key_inside_nested_value_says_did_you_mean(
    make_raw, config_error, mentions, patch, fragments
):
    mentions(str(config_error(make_raw(**patch))), *fragments)


def test_misspelled_search_space_section_says_did_you_mean(make_raw, config_error, mentions):
    raw = make_raw(search_space={"trian.learning_rate": {"type": "uniform", "low": 0.1, "high": 1}})

    mentions(str(config_error(raw)), "search_space.trian.learning_rate", "did you mean 'train'?")


# --- positive cases -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "metric", "mode"),
    [
        ("causal_lm", "eval_loss", "min"),
        ("causal_lm", "eval_perplexity", "min"),
        ("causal_lm", "eval_token_accuracy", "max"),
        ("sequence_classification", "eval_f1", "max"),
        ("sequence_classification", "eval_accuracy", "max"),
        ("sequence_classification", "train_loss", "min"),
    ],
)
def test_mode_is_inferred_from_metric(make_config, task, metric, mode):
    config = make_config(task=task, metric=metric)

    assert config.mode == mode
    assert config.resolved_mode == mode


def test_explicit_mode_matching_the_metric_is_kept(make_config):
    config = make_config(task="sequence_classification", metric="eval_f1", mode="max")

    assert config.mode == "max"


def test_search_space_dimensions_are_parsed_by_type(make_config):
    config = make_config(search_space={"lora.r": {"type": "choice", "values": [4, 8]}})

    assert isinstance(config.search_space["lora.r"], Choice)
    assert config.search_space["lora.r"].values == [4, 8]


# --- YAML files ---------------------------------------------------------------------------


def _write_yaml(path: Path, raw: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_yaml_file_errors_name_the_file(make_raw, config_error, mentions, tmp_path):
    path = _write_yaml(tmp_path / "bad.yaml", make_raw(metrc="x", scheduler={"tpye": "asha"}))

    error = config_error(path)

    mentions(
        str(error), f"Invalid {path} (2 problems)", "metrc: unknown key (did you mean 'metric'?)",
        "scheduler.tpye: unknown key (did you mean 'type'?)",
    )


def test_yaml_path_may_be_a_string(make_raw, tmp_path):
    path = _write_yaml(tmp_path / "ok.yaml", make_raw())

    assert load_config(str(path)).task == "causal_lm"


def test_yaml_name_defaults_to_file_stem_and_timestamp(make_raw, tmp_path):
    path = _write_yaml(tmp_path / "my_sweep.yaml", make_raw())

    config = load_config(path)

    assert re.fullmatch(r"my_sweep-\d{8}-\d{6}", config.name or ""), config.name


def test_yaml_base_dir_defaults_to_the_files_folder(make_raw, tmp_path, monkeypatch):
    _write_yaml(tmp_path / "configs" / "sweep.yaml", make_raw())
    monkeypatch.chdir(tmp_path)  # the default must not depend on the current folder

    config = load_config(Path("configs/sweep.yaml"))

    assert config.base_dir == str((tmp_path / "configs").resolve())


def test_yaml_explicit_name_and_base_dir_are_kept(make_raw, tmp_path):
    path = _write_yaml(tmp_path / "s.yaml", make_raw(name="exp1", base_dir="/data"))

    config = load_config(path)

    assert (config.name, config.base_dir) == ("exp1", "/data")


def test_set_overrides_apply_to_yaml(make_raw, tmp_path):
    raw = make_raw(
        train={"learning_rate": 1e-4},
        search_space={"lora.r": {"type": "choice", "values": [16, 32]}},
        search={"algorithm": "random"},
    )
    path = _write_yaml(tmp_path / "s.yaml", raw)

    config = load_config(path, ["train.learning_rate=1e-3", "search_space.lora.r.values=[4,8]"])

    assert config.train.learning_rate == pytest.approx(1e-3)
    assert isinstance(config.train.learning_rate, float)
    dim = config.search_space["lora.r"]
    assert isinstance(dim, Choice) and dim.values == [4, 8]
    assert yaml.safe_load(path.read_text()) == raw  # the file itself is untouched


def test_set_override_adds_a_whole_dimension(make_raw):
    overrides = ["search_space.lora.alpha={type: choice, values: [16, 32]}", "metric=train_loss"]

    config = load_config(make_raw(), overrides)

    assert config.search_space["lora.alpha"].values == [16, 32]
    assert set(config.search_space) == {LR, "lora.alpha"}
    assert config.metric == "train_loss"


def test_set_override_value_is_validated(make_raw, config_error, mentions):
    error = config_error(make_raw(), ["train.learning_rate=-1"])

    mentions(str(error), "train.learning_rate", "greater than 0", "got -1")


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("train.learning_rate", ["--set 'train.learning_rate'", "expected KEY=VALUE"]),
        ("=3", ["expected KEY=VALUE"]),
        ("metric.name=x", ["--set metric.name", "'metric' is not a section"]),
    ],
)
def test_malformed_set_override_is_rejected(make_raw, config_error, mentions, override, fragments):
    mentions(str(config_error(make_raw(metric="eval_loss"), [override])), *fragments)


def test_set_override_on_a_config_object_revalidates(make_config):
    config = make_config()

    updated = load_config(config, ["train.batch_size=4"])

    assert updated.train.batch_size == 4
    assert config.train.batch_size == 8  # the original object is unchanged
    assert load_config(config) is config


def test_set_override_does_not_mutate_the_callers_dict(make_raw):
    raw = make_raw(train={"learning_rate": 1e-4})

    load_config(raw, ["train.learning_rate=1e-3"])

    assert raw["train"]["learning_rate"] == 1e-4


def test_missing_yaml_file(config_error, mentions, tmp_path):
    mentions(str(config_error(tmp_path / "nope.yaml")), "nope.yaml", "does not exist")


def test_invalid_yaml(config_error, mentions, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("task: [causal_lm\n")

    mentions(str(config_error(path)), "broken.yaml", "not valid YAML")


def test_yaml_top_level_must_be_a_mapping(config_error, mentions, tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- task\n- model\n")

    mentions(str(config_error(path)), "top level must be a mapping")


def test_empty_yaml_reports_the_required_sections(config_error, mentions, tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")

    error = config_error(path)

    mentions(str(error), "task: required", "model: required", "data: required")


def test_loaded_config_is_a_sweep_config(make_raw, tmp_path):
    assert isinstance(load_config(_write_yaml(tmp_path / "s.yaml", make_raw())), SweepConfig)
