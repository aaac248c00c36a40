"""A sweep that can make no progress stops with its state saved, instead of hanging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import lm_config

from orchestrator.run import launch as launch_module
from orchestrator.run.watchdog import SweepStalledError
from orchestrator.search import schedulers

pytestmark = pytest.mark.integration


def _never_resuming_scheduler(*args: object, **kwargs: object) -> object:
    """Pauses every trial at its first report and never lets a paused trial run again."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class NeverResume(FIFOScheduler):
        def on_trial_result(self, tune_controller: object, trial: object, result: dict) -> str:
            return TrialScheduler.PAUSE

        def choose_trial_to_run(self, tune_controller: object) -> object:
            pending = [t for t in tune_controller.get_trials()  # type: ignore[attr-defined]
                       if t.status == Trial.PENDING]
            return pending[0] if pending else None

    return NeverResume()


def test_a_stalled_sweep_stops_saved_and_says_how_to_resume(
        local_ray, tiny_lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedulers, "build_scheduler", _never_resuming_scheduler)
    config = lm_config(tiny_lm_dir, name="stall", storage_path=str(tmp_path), num_samples=2,
                       baseline=False, stall_timeout_s=3,
                       search={"algorithm": "random", "max_concurrent_trials": 2})
    with pytest.raises(SweepStalledError) as info:
        launch_module.launch(config, live=False)
    message = str(info.value)
    experiment = tmp_path / "stall"
    assert "the sweep stalled" in message and "2 unfinished trials" in message
    assert message.count("PAUSED (step 5)") == 2, message
    assert f"sweep resume {experiment}" in message
    seconds = float(message.split("for ")[1].split(" s no trial")[0])
    assert seconds >= 3  # it waited the configured time, no less
    # Tune saved its state on the way out: both trials are there, paused, resumable.
    state_file = max(experiment.glob("experiment_state-*.json"))
    statuses = [json.loads(t[0])["status"] if isinstance(t, list) else None
                for t in json.loads(state_file.read_text())["trial_data"]]
    assert statuses == ["PAUSED", "PAUSED"]


def test_stall_timeout_is_validated(make_raw, config_error, mentions) -> None:
    mentions(str(config_error(make_raw(stall_timeout_s=0))), "stall_timeout_s")
