"""A corrupt newest experiment state is set aside, never silently restarted from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.experiment.storage import open_storage
from orchestrator.run.resume import ResumeError, repair_experiment_state


def _state(folder: Path, session: str, body: str | None = None) -> Path:
    path = folder / f"experiment_state-{session}.json"
    path.write_text(body if body is not None else json.dumps({"trial_data": [], "runner": {}}))
    return path


def test_intact_newest_state_is_left_alone(tmp_path: Path) -> None:
    _state(tmp_path, "2026-11-21_10-00-00")
    _state(tmp_path, "2026-11-21_11-00-00")
    assert repair_experiment_state(open_storage(str(tmp_path))) == []
    assert len(list(tmp_path.glob("experiment_state-*.json"))) == 2


def test_torn_newest_state_is_set_aside_and_the_previous_used(tmp_path: Path) -> None:
    older = _state(tmp_path, "2026-11-21_10-00-00")
    _state(tmp_path, "2026-11-21_11-00-00", body='{"trial_data": [')  # torn write
    moved = repair_experiment_state(open_storage(str(tmp_path)))
    assert moved == ["experiment_state-2026-11-21_11-00-00.json"]
    assert list(tmp_path.glob("experiment_state-*.json")) == [older]
    assert len(list((tmp_path / "corrupt").iterdir())) == 1  # kept for a post-mortem


def test_no_readable_state_is_an_error_not_a_restart(tmp_path: Path) -> None:
    _state(tmp_path, "2026-11-21_11-00-00", body="\x00\x00garbage")
    with pytest.raises(ResumeError, match="cannot be resumed without re-running every trial"):
        repair_experiment_state(open_storage(str(tmp_path)))


def test_valid_json_that_is_not_a_state_counts_as_corrupt(tmp_path: Path) -> None:
    _state(tmp_path, "2026-11-21_10-00-00")
    _state(tmp_path, "2026-11-21_11-00-00", body="[]")
    assert repair_experiment_state(open_storage(str(tmp_path))) == [
        "experiment_state-2026-11-21_11-00-00.json"]
