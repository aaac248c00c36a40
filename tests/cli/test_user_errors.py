"""A user's mistake is `error: ...` and exit status 2, never a traceback; a bug is never
dressed up as one: a plain RuntimeError/ValueError/... leaves the command with its traceback.

Fast and CPU-only: the experiments here are folders made up on disk (no Ray started).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from sweep_helpers import lm_config

from orchestrator.cli.main import main
from orchestrator.config.errors import UserError
from orchestrator.config.loading import load_config
from orchestrator.experiment.layout import SWEEP_CONFIG_FILE

POST_SWEEP = ("results", "export", "evaluate", "soup", "report")


def _args(command: str, experiment: Path, tmp_path: Path) -> list[str]:
    extra = ["--out", str(tmp_path / "exported")] if command == "export" else []
    return [command, str(experiment), *extra]


def _sweep(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _sweep_config(folder: Path) -> Path:
    """A folder with the sweep config `sweep run` writes first (the model is never loaded)."""
    folder.mkdir(parents=True)
    config = load_config(lm_config(folder / "no-model", name=folder.name))
    (folder / SWEEP_CONFIG_FILE).write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return folder


def _no_trial_reported(folder: Path) -> Path:
    """An experiment whose Tune state lists no trial yet (a sweep stopped at its start)."""
    _sweep_config(folder)
    state = {"trial_data": [], "runner_data": {}}
    (folder / "experiment_state-2026-11-21_10-00-00.json").write_text(json.dumps(state))
    return folder


def _assert_user_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.startswith("error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


# --- (a) the user's mistakes -------------------------------------------------------------------


@pytest.mark.parametrize("command", [*POST_SWEEP, "resume"])
def test_missing_experiment_folder(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-sweep"
    result = _sweep(*_args(command, missing, tmp_path))
    _assert_user_error(result, str(missing))
    assert not (tmp_path / "exported").exists()


@pytest.mark.parametrize("command", POST_SWEEP)
def test_folder_that_is_not_a_sweep(command: str, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    _assert_user_error(_sweep(*_args(command, folder, tmp_path)), SWEEP_CONFIG_FILE,
                       "sweep run")


@pytest.mark.parametrize("command", POST_SWEEP)
def test_sweep_that_saved_no_state_yet(command: str, tmp_path: Path) -> None:
    experiment = _sweep_config(tmp_path / "just-started")
    _assert_user_error(_sweep(*_args(command, experiment, tmp_path)), "experiment_state-")


@pytest.mark.parametrize("command", POST_SWEEP)
def test_experiment_with_no_trial_reported(command: str, tmp_path: Path) -> None:
    experiment = _no_trial_reported(tmp_path / "stopped-at-start")
    result = _sweep(*_args(command, experiment, tmp_path))
    _assert_user_error(result, f"{experiment}: no trial reported 'eval_loss' yet")


def test_user_error_is_one_line_on_stderr_without_traceback(tmp_path: Path) -> None:
    """As a user runs it: the real process, its stderr, its exit status."""
    missing = tmp_path / "no-such-sweep"
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "results", str(missing)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {missing}: no such folder")
    assert "Traceback" not in proc.stderr


def test_out_folder_not_empty_is_a_user_error(tmp_path: Path) -> None:
    from orchestrator.post.errors import OutputExistsError
    from orchestrator.post.export import prepare_out_dir

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite") as info:
        prepare_out_dir(tmp_path / "out")
    assert isinstance(info.value, UserError) and isinstance(info.value, FileExistsError)
    assert (tmp_path / "out" / "keep.txt").exists()


@pytest.mark.parametrize(("options", "message"), [
    ({"top_k": 1}, "a soup needs top_k >= 2"),
    ({"method": "mean"}, "method must be one of"),
    ({"density": 0.0}, "0 < density <= 1"),
])
def test_soup_options_are_user_errors(options: dict, message: str, tmp_path: Path) -> None:
    from orchestrator.post.errors import UnsupportedRequestError
    from orchestrator.post.soup import make_soup

    with pytest.raises(UnsupportedRequestError, match=message):
        make_soup(tmp_path / "never-read", **options)


def test_run_into_an_existing_experiment_is_refused(tmp_path: Path) -> None:
    from orchestrator.experiment.errors import ExperimentExistsError
    from orchestrator.run.launch import prepare_storage

    _sweep_config(tmp_path / "taken")
    config = load_config(lm_config(tmp_path / "no-model", name="taken",
                                   storage_path=str(tmp_path)))
    with pytest.raises(ExperimentExistsError, match="already exists; choose another `name`"):
        prepare_storage(config, nodes=[])  # no node to probe: Ray is not started


def test_submit_into_an_existing_experiment_exits_2(tmp_path: Path) -> None:
    _sweep_config(tmp_path / "taken")
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(lm_config(tmp_path / "no-model", name="taken",
                                               storage_path=str(tmp_path))))
    result = _sweep("submit", str(config), "--address", "http://127.0.0.1:1")
    _assert_user_error(result, f"experiment {str(tmp_path / 'taken')!r} already exists")


def test_a_request_the_jobs_api_refuses_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's Jobs client raises a plain RuntimeError for a refused request (an unknown job id
    is a 404); `cluster.jobs` turns it into a ClusterError, so `sweep status` exits 2."""
    import cluster.jobs

    class RefusingClient:  # what `JobSubmissionClient.get_job_info` does for an unknown id
        def get_job_info(self, job_id: str) -> None:
            raise RuntimeError(f"Request failed with status code 404: Job {job_id} does not "
                               "exist.")

    monkeypatch.setattr(cluster.jobs, "_client", lambda address: RefusingClient())
    result = _sweep("status", "raysubmit_nope", "--address", "http://127.0.0.1:8265")
    _assert_user_error(result, "refused the request", "Job raysubmit_nope does not exist",
                       "sweep list")


# --- (b) bugs keep their traceback -------------------------------------------------------------

# command -> (module, function the command calls, arguments)
CALLS = {
    "results": ("orchestrator.experiment.results", "load_results", ["EXP"]),
    "export": ("orchestrator.post.export", "export_best", ["EXP", "--out", "OUT"]),
    "evaluate": ("orchestrator.post.final_eval", "evaluate_test_split", ["EXP"]),
    "soup": ("orchestrator.post.soup", "make_soup", ["EXP"]),
    "report": ("orchestrator.post.report", "write_report", ["EXP"]),
    "resume": ("orchestrator.run.resume", "resume", ["EXP"]),
    "run": ("orchestrator.run.launch", "launch", ["CONFIG"]),
    "validate": ("orchestrator.cli.main", "load_config", ["CONFIG", "--no-cluster"]),
    "submit": ("cluster.jobs", "submit", ["CONFIG", "--address", "http://127.0.0.1:1"]),
    "status": ("cluster.jobs", "job_info", ["raysubmit_x", "--address", "http://127.0.0.1:1"]),
    "logs": ("cluster.jobs", "logs", ["raysubmit_x", "--address", "http://127.0.0.1:1"]),
    "stop": ("cluster.jobs", "stop", ["raysubmit_x", "--address", "http://127.0.0.1:1"]),
    "list": ("cluster.jobs", "list_jobs", ["--address", "http://127.0.0.1:1"]),
}
BUILTINS = (RuntimeError, ValueError, FileNotFoundError, FileExistsError, NotImplementedError,
            ImportError)


@pytest.mark.parametrize("kind", BUILTINS, ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("command", sorted(CALLS))
def test_a_bug_is_not_reported_as_a_user_error(command: str, kind: type[Exception],
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    module, function, args = CALLS[command]
    bug = kind("a bug deep in the code")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise bug

    monkeypatch.setattr(importlib.import_module(module), function, broken)
    config = tmp_path / "sweep.yaml"
    config.write_text("{}")
    paths = {"EXP": str(tmp_path), "OUT": str(tmp_path / "out"), "CONFIG": str(config)}
    result = _sweep(command, *[paths.get(a, a) for a in args])
    assert result.exception is bug, result.output  # propagated: the traceback is printed
    assert result.exit_code == 1
    assert "error:" not in result.output


@pytest.mark.parametrize("command", ["results", "validate", "submit"])
def test_a_user_error_from_the_same_place_is_reported(command: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The other half of the test above: the same hook, raising a UserError, exits 2."""
    module, function, args = CALLS[command]

    def refuses(*_args: object, **_kwargs: object) -> None:
        raise UserError("the fix is to do X")

    monkeypatch.setattr(importlib.import_module(module), function, refuses)
    config = tmp_path / "sweep.yaml"
    config.write_text("{}")
    paths = {"EXP": str(tmp_path), "CONFIG": str(config)}
    _assert_user_error(_sweep(command, *[paths.get(a, a) for a in args]), "the fix is to do X")
