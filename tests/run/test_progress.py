"""The progress view in a log (not a terminal): a line per report and one per ended trial."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from orchestrator.run.progress import ProgressView


def _trial(trial_id: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"train": {"learning_rate": 1e-4}})


def test_a_log_hears_each_report_and_each_ended_trial(capsys: pytest.CaptureFixture[str]) -> None:
    view = ProgressView("eval_loss", "min", total_trials=3, live=False)
    a, b = _trial("t_a"), _trial("t_b")
    view.on_trial_start(0, [], a)
    view.on_trial_result(0, [], a, {"eval_loss": 2.0, "step": 10, "total_steps": 20})
    view.on_trial_result(0, [], a, {"eval_loss": 1.5, "step": 20, "total_steps": 20})
    view.on_trial_complete(0, [], a)
    view.on_trial_start(0, [], b)
    view.on_trial_error(0, [], b)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert "t_a step 20/20 eval_loss=1.5" in lines[1]
    assert lines[2].endswith("t_a TERMINATED best eval_loss=1.5 (1/3 trials done)")
    assert lines[3].endswith("t_b ERROR no result (2/3 trials done)")
