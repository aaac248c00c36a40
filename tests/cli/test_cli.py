"""The `sweep` command line, run as a user runs it (subprocesses, real Ray for `run`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_helpers import lm_config


def _sweep(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_validate_ok_without_training(tiny_lm_dir: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, lm_config(tiny_lm_dir))
    proc = _sweep("validate", str(path), "--no-cluster")
    assert proc.returncode == 0, proc.stderr
    assert "OK:" in proc.stdout and "train_examples=400" in proc.stdout
    assert not list(tmp_path.glob("**/checkpoint_*"))  # nothing trained


def test_validate_reports_every_problem_and_exits_2(tiny_lm_dir: Path, tmp_path: Path) -> None:
    config = lm_config(tiny_lm_dir)
    config["train"]["learnig_rate"] = 1e-3
    config["lora"]["rank"] = 8
    path = _write(tmp_path, config)
    proc = _sweep("validate", str(path), "--no-cluster")
    assert proc.returncode == 2
    assert "train.learnig_rate: unknown key (did you mean 'learning_rate'?)" in proc.stderr
    assert "lora.rank: unknown key" in proc.stderr
    assert "2 problems" in proc.stderr


def test_validate_missing_column_names_field(tiny_lm_dir: Path, tmp_path: Path) -> None:
    config = lm_config(tiny_lm_dir)
    config["data"]["prompt_template"] = "Write {day} in words:"
    proc = _sweep("validate", str(_write(tmp_path, config)), "--no-cluster")
    assert proc.returncode == 2
    assert "column 'day' is not in the train split" in proc.stderr
    assert "'date'" in proc.stderr  # lists the columns that exist


def test_set_override_is_applied(tiny_lm_dir: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, lm_config(tiny_lm_dir))
    proc = _sweep("validate", str(path), "--no-cluster", "--set", "train.max_steps=7")
    assert proc.returncode == 0, proc.stderr
    assert "at most 7 optimizer steps" in proc.stdout


@pytest.mark.integration
def test_run_then_results(tiny_lm_dir: Path, tmp_path: Path) -> None:
    config = lm_config(tiny_lm_dir, name="cli", storage_path=str(tmp_path / "out"), num_samples=2)
    path = _write(tmp_path, config)
    proc = _sweep("run", str(path), "--address", "local")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Best checkpoint:" in proc.stdout and "Untrained model: eval_loss=" in proc.stdout
    results = _sweep("results", str(tmp_path / "out" / "cli"))
    assert results.returncode == 0, results.stderr
    assert "Best trial:" in results.stdout and "train.learning_rate" in results.stdout
