"""`sweep validate` runs the storage preflight of `sweep run`, bounded in time."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sweep_helpers import lm_config

from orchestrator.cli import main
from orchestrator.experiment import storage


def _validate(tmp_path: Path, model_dir: Path, storage_path: str) -> tuple[int, str]:
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(lm_config(model_dir, storage_path=storage_path)))
    result = CliRunner().invoke(main, ["validate", str(config), "--no-cluster"])
    return result.exit_code, result.output


def test_unwritable_storage_fails_validate(tmp_path: Path, tiny_lm_dir: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, output = _validate(tmp_path, tiny_lm_dir, str(blocker / "results"))
    assert code == 2
    assert "storage_path: this machine cannot write to" in output and "a-file" in output
    assert "Traceback" not in output


def test_unreachable_s3_endpoint_fails_validate_within_the_timeout(
        tmp_path: Path, tiny_lm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "PROBE_TIMEOUT_S", 5.0)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    # Port 9 on loopback: nothing listens there, so every request fails or times out.
    uri = "s3://bucket/sweeps?region=us-east-1&endpoint_override=http://127.0.0.1:9"
    code, output = _validate(tmp_path, tiny_lm_dir, uri)
    assert code == 2
    assert "storage_path: this machine cannot write to" in output and "127.0.0.1:9" in output
    assert "endpoint_override" in output and "Traceback" not in output


def test_writable_storage_passes_validate(tmp_path: Path, tiny_lm_dir: Path) -> None:
    code, output = _validate(tmp_path, tiny_lm_dir, str(tmp_path / "results"))
    assert code == 0, output
    assert output.startswith("OK:")
