"""An experiment made before a config rule was added stays readable: its saved
sweep_config.yaml and its checkpoints' spec.json are validated as stored (types and ranges,
not the rules that refuse a new sweep as pointless), and its data is read as the sweep read it.

Fast and CPU-only: experiments are folders made up on disk; no Ray is started.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sweep_helpers import DATES, deep_merge, lm_config

from orchestrator.cli.main import main
from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config, validate_dict
from orchestrator.experiment.checkpoints import checkpoint_spec
from orchestrator.experiment.layout import SWEEP_CONFIG_FILE
from orchestrator.experiment.results import read_sweep_config
from orchestrator.experiment.storage import open_storage
from orchestrator.post.final_eval import load_eval_data
from orchestrator.run.preflight import build_plan
from trainables.checkpointing import SPEC_FILE
from trainables.config import TrialSpec

TRAIN = str(DATES / "train.jsonl")
EMPTY_STATE = json.dumps({"trial_data": [], "runner_data": {}})

# A rule each of these configs breaks, which sweeps made before it never checked.
RULES_ADDED_SINCE: list[tuple[str, dict[str, Any]]] = [
    ("two-splits-one-file", {"data": {"validation": TRAIN}}),
    ("hub-config-without-hub-dataset", {"data": {"hub_config": "emotion"}}),
    ("initial-points-cover-every-trial", {"search": {"n_initial_points": 10}}),
    ("population-leaves-no-second-generation",
     {"search": {"algorithm": "nsga2", "population_size": 8}}),
    ("eval-every-above-max-steps", {"train": {"eval_every_steps": 50},
                                    "scheduler": {"grace_period": None}}),
    ("grace-period-above-max-steps", {"scheduler": {"grace_period": 40}}),
    ("refuse-on-leakage-without-the-check",
     {"quality": {"check_leakage": False, "refuse_on_leakage": True}}),
    ("storage-path-one-slash", {"storage_path": "s3:/bucket/runs"}),
    ("uniform-on-an-integer-field",
     {"search_space": {"train.learning_rate": {"type": "loguniform", "low": 1e-4, "high": 3e-2},
                       "train.batch_size": {"type": "uniform", "low": 4, "high": 16}}}),
]




def _stored(folder: Path, patch: dict[str, Any], model: Path | None = None) -> dict[str, Any]:
    """An experiment folder as `sweep run` left it, whose saved config breaks a newer rule."""
    folder.mkdir(parents=True)
    config = load_config(lm_config(model or folder / "no-model", name=folder.name))
    raw = deep_merge(config.model_dump(mode="json"), patch)
    (folder / SWEEP_CONFIG_FILE).write_text(yaml.safe_dump(raw))
    (folder / "experiment_state-2026-11-21_10-00-00.json").write_text(EMPTY_STATE)
    return raw


@pytest.mark.parametrize("patch", [pytest.param(p, id=i) for i, p in RULES_ADDED_SINCE])
def test_a_stored_config_that_breaks_a_newer_rule_is_read(patch: dict[str, Any],
                                                          tmp_path: Path) -> None:
    raw = _stored(tmp_path / "exp", patch)
    with pytest.raises(ConfigError):  # a new sweep with this config is refused ...
        validate_dict(raw)
    config = read_sweep_config(open_storage(str(tmp_path / "exp")))  # ... a stored one read
    assert config is not None
    assert deep_merge(config.model_dump(mode="json"), patch) == config.model_dump(mode="json")


@pytest.mark.parametrize("command", ["results", "export"])
def test_post_sweep_commands_read_such_an_experiment(command: str, tmp_path: Path) -> None:
    """They get past the config to the (empty) trial list, not `error: Invalid ...yaml`."""
    _stored(tmp_path / "exp", {"data": {"validation": TRAIN, "hub_config": "emotion"},
                               "search": {"n_initial_points": 10}})
    extra = ["--out", str(tmp_path / "out")] if command == "export" else []
    result = CliRunner().invoke(main, [command, str(tmp_path / "exp"), *extra])
    assert result.exit_code == 2, result.output
    assert "no trial reported 'eval_loss'" in result.output, result.output
    assert "Invalid" not in result.output


def test_type_and_range_rules_still_hold_for_a_stored_config(tmp_path: Path) -> None:
    raw = _stored(tmp_path / "exp", {"train": {"learning_rate": -1.0}})
    with pytest.raises(ConfigError, match="train.learning_rate"):
        validate_dict(raw, stored=True)


def test_a_checkpoint_spec_that_breaks_a_newer_rule_is_read(tmp_path: Path) -> None:
    spec = json.loads(TrialSpec(task="causal_lm", model={"path": "m"},
                                data={"train": "t.jsonl"}).model_dump_json())
    spec["data"] |= {"validation": "t.jsonl", "hub_config": "emotion"}
    (tmp_path / SPEC_FILE).write_text(json.dumps(spec))
    assert checkpoint_spec(tmp_path).data.hub_config == "emotion"


def test_evaluation_reads_a_stored_sweeps_data_as_it_was(tiny_lm_dir: Path,
                                                         tmp_path: Path) -> None:
    """Validation and train as one file: refused for new sweeps, read back for `sweep
    evaluate` / `soup` of a sweep that ran with it."""
    _stored(tmp_path / "exp", {"data": {"validation": TRAIN}}, model=tiny_lm_dir)
    config = read_sweep_config(open_storage(str(tmp_path / "exp")))
    assert config is not None
    data = load_eval_data(config, test_data=str(DATES / "test.jsonl"))
    assert data.data.validation and data.data.test


def test_gapped_label_ids_of_a_stored_sweep_are_read(tiny_encoder_dir: Path,
                                                     tmp_path: Path) -> None:
    rows = "".join(json.dumps({"text": f"t{i}", "label": 2 * (i % 2)}) + "\n" for i in range(40))
    (tmp_path / "gapped.jsonl").write_text(rows)
    raw = lm_config(tiny_encoder_dir, task="sequence_classification", metric="eval_f1",
                    data={"train": str(tmp_path / "gapped.jsonl"), "max_length": 32})
    with pytest.raises(ConfigError, match="no example of \\[1\\]"):
        build_plan(validate_dict(raw))  # the data check of a new sweep ...
    data = load_eval_data(validate_dict(raw, stored=True))  # ... is not run on a stored one
    assert data.data.num_labels == 3


def test_resume_plans_a_stored_sweep_on_its_data_as_it_was(tiny_lm_dir: Path,
                                                           tmp_path: Path) -> None:
    """`sweep resume` builds its plan with stored=True (no Ray here: the plan alone)."""
    _stored(tmp_path / "exp", {"data": {"validation": TRAIN}}, model=tiny_lm_dir)
    config = read_sweep_config(open_storage(str(tmp_path / "exp")))
    assert config is not None
    with pytest.raises(ConfigError, match="same file as data.train"):
        build_plan(config)
    assert build_plan(config, stored=True).data.validation
