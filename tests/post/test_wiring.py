"""The hooks as the rest of the project uses them: config sections, CLI, data, validate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hooks import KEEPS_TEST_TEXTS, needs_integration
from sweep_helpers import DATES, ROOT, lm_config

from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config


@needs_integration
def test_config_sections_defaults_and_errors(tiny_lm_dir: Path) -> None:
    config = load_config(lm_config(tiny_lm_dir))
    assert config.logging.tensorboard and config.logging.mlflow is None
    assert not config.quality.refuse_on_leakage and config.quality.check_leakage
    raw = lm_config(tiny_lm_dir, quality={"refuse_on_leaks": True},
                    logging={"mlflow": {"tracking_uri": "http://u:pw@host"}})
    with pytest.raises(ConfigError) as err:
        load_config(raw)
    assert "quality.refuse_on_leaks: unknown key (did you mean 'refuse_on_leakage'?)" in str(
        err.value)
    assert "MLFLOW_TRACKING_PASSWORD" in str(err.value)


@needs_integration
def test_sweep_cli_has_report_command() -> None:
    from orchestrator.cli.main import main

    assert "report" in main.commands


@pytest.mark.skipif(not KEEPS_TEST_TEXTS, reason="not wired in yet: PreparedData has no "
                    "raw_test_texts, so the leakage check sees validation only")
def test_prepared_data_keeps_test_texts(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from orchestrator.run.leakage import check_data_leakage
    from orchestrator.run.preflight import build_plan

    raw = lm_config(tiny_lm_dir)
    # Train's first 100 rows, all among its 400, in a file of their own (the train file itself
    # is refused as a test split).
    rows = Path(raw["data"]["train"]).read_text().splitlines(keepends=True)[:100]
    (tmp_path / "test.jsonl").write_text("".join(rows))
    raw["data"]["test"] = str(tmp_path / "test.jsonl")
    raw["data"]["max_eval_examples"] = 100
    config = load_config(raw)
    config.base_dir = str(ROOT)
    data = build_plan(config).data
    assert len(data.raw_test_texts) == len(data.test) > 0
    report = check_data_leakage(data)
    test = {s.split: s for s in report.splits}["test"]
    assert test.leaked == test.size


@needs_integration
def test_validate_prints_the_leakage_check(tiny_lm_dir: Path, tmp_path: Path) -> None:
    raw = lm_config(tiny_lm_dir)
    rows = (DATES / "train.jsonl").read_text().splitlines()[:30]
    leaky = tmp_path / "validation.jsonl"
    unseen = {"date": "0001-01-01", "words": "January 1, 1"}
    leaky.write_text("\n".join([*rows[:10], json.dumps(unseen)]))
    raw["data"]["validation"] = str(leaky)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate", str(path),
                           "--no-cluster"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Data leakage: 10 of 11 validation texts" in proc.stdout
