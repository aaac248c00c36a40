"""A broken experiment folder is `error: ...` naming the file and the fix, not a traceback: a
checkpoint without spec.json or metrics.json, an experiment state cut off mid-write, object
storage that does not answer. A store's error stays a store's error: it never counts as a
corrupt file that `sweep resume` would set aside.

Fast and CPU-only: the experiments are folders made up on disk, the object store an endpoint
where nothing listens (no Ray, no S3 server).
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner, Result
from sweep_helpers import lm_config

from orchestrator.cli.main import main
from orchestrator.config.errors import UserError
from orchestrator.config.loading import load_config
from orchestrator.experiment.errors import (
    BrokenCheckpointError,
    CheckpointNotFoundError,
    CorruptExperimentStateError,
)
from orchestrator.experiment.layout import SWEEP_CONFIG_FILE
from orchestrator.experiment.results import SweepResult, newest_readable_state
from orchestrator.experiment.storage import StorageReadError, open_storage
from orchestrator.experiment.trials import TrialCheckpoint
from trainables.checkpointing import ADAPTER_DIR, METRICS_FILE, MODEL_DIR, SPEC_FILE
from trainables.config import TrialSpec

POST_SWEEP = ("results", "export", "evaluate", "soup", "report")
OLDER = "experiment_state-2026-11-21_10-00-00.json"
NEWER = "experiment_state-2026-11-22_10-00-00.json"
EMPTY_STATE = json.dumps({"trial_data": [], "runner_data": {}})


def _sweep(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _assert_user_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


def _args(command: str, experiment: Path | str, tmp_path: Path) -> list[str]:
    extra = ["--out", str(tmp_path / "exported")] if command == "export" else []
    return [command, str(experiment), *extra]


def _experiment(folder: Path, states: dict[str, str]) -> Path:
    """A folder shaped like `sweep run`'s: its sweep config and Tune's state snapshots."""
    folder.mkdir(parents=True)
    config = load_config(lm_config(folder / "no-model", name=folder.name))
    (folder / SWEEP_CONFIG_FILE).write_text(yaml.safe_dump(config.model_dump(mode="json")))
    for name, text in states.items():
        (folder / name).write_text(text)
    return folder


def _checkpoint(folder: Path, finetune: str = "lora") -> Path:
    """What `trainables.checkpointing.save` writes, less the tensors nobody reads here."""
    spec = TrialSpec(task="causal_lm", model={"path": "m"}, data={"train": "t.jsonl"},
                     train={"finetune": finetune})
    (folder / (ADAPTER_DIR if finetune == "lora" else MODEL_DIR)).mkdir(parents=True)
    (folder / SPEC_FILE).write_text(spec.model_dump_json())
    (folder / METRICS_FILE).write_text(json.dumps({"eval_loss": 1.5, "step": 10}))
    return folder


def _nowhere() -> str:
    """An S3 endpoint where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials in the environment, so the S3 client asks no metadata service for them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# --- checkpoints -------------------------------------------------------------------------------


def _break(checkpoint: Path, how: str) -> str:
    """Break the checkpoint; what the error must name."""
    if how == "no spec":
        (checkpoint / SPEC_FILE).unlink()
        return f"no {SPEC_FILE}"
    if how == "no metrics":
        (checkpoint / METRICS_FILE).unlink()
        return f"no {METRICS_FILE}"
    if how == "no weights":
        (checkpoint / ADAPTER_DIR).rmdir()
        return f"no {ADAPTER_DIR}/"
    if how == "cut-off metrics":
        (checkpoint / METRICS_FILE).write_text('{"eval_loss": 1.')
        return f"{METRICS_FILE} is not readable JSON"
    if how == "not a spec":  # JSON, but no TrialSpec (was a pydantic ValidationError)
        (checkpoint / SPEC_FILE).write_text('{"task": "seq2seq", "model": {"path": "m"}}')
        return f"{SPEC_FILE} is not a trial spec this version reads (task:"
    assert how == "cut-off spec"
    (checkpoint / SPEC_FILE).write_text('{"task": "caus')
    return f"{SPEC_FILE} is not readable JSON"


BREAKS = ["no spec", "no metrics", "no weights", "cut-off metrics", "cut-off spec", "not a spec"]


@pytest.mark.parametrize("how", BREAKS)
def test_a_broken_checkpoint_names_itself_and_the_fix(how: str, tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path / "exp" / "trial_a" / "checkpoint_000002")
    expected = _break(checkpoint, how)
    trial = TrialCheckpoint(trial_id="trial_a", rank=1, value=1.5, uri=str(checkpoint))
    with pytest.raises(BrokenCheckpointError) as info:
        trial.local(str(tmp_path / "scratch"))
    message = str(info.value)
    assert message.startswith(f"checkpoint {checkpoint} (trial trial_a)")
    assert expected in message and "restore the folder" in message
    assert isinstance(info.value, UserError) and isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_a_complete_checkpoint_is_used_as_it_is(finetune: str, tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path / "checkpoint_000002", finetune)
    trial = TrialCheckpoint(trial_id="t", rank=1, value=1.5, uri=str(checkpoint))
    assert trial.local(str(tmp_path / "scratch")) == checkpoint


def _result(tmp_path: Path, checkpoint: Path) -> SweepResult:
    config = load_config(lm_config(tmp_path / "no-model", name="exp"))
    return SweepResult(
        experiment_path=str(tmp_path / "exp"), metric="eval_loss", mode="min",
        best_trial_id="trial_a", best_config={}, best_metrics={"eval_loss": 1.5},
        best_checkpoint=str(checkpoint), trials=pd.DataFrame(), config=config)


def test_the_best_checkpoint_of_a_result_is_checked_too(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path / "exp" / "trial_a" / "checkpoint_000002")
    (checkpoint / SPEC_FILE).unlink()
    with pytest.raises(BrokenCheckpointError, match=f"no {SPEC_FILE}"):
        _result(tmp_path, checkpoint).local_checkpoint()
    gone = tmp_path / "exp" / "trial_a" / "checkpoint_000009"
    with pytest.raises(CheckpointNotFoundError, match="is gone"):
        _result(tmp_path, gone).local_checkpoint()


@pytest.mark.parametrize("how", ["no spec", "no metrics"])
def test_export_of_a_broken_checkpoint_exits_2(how: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """As `sweep export` meets it: the experiment is read (here: stubbed), the chosen trial's
    checkpoint lacks a file."""
    import orchestrator.post.export as export

    checkpoint = _checkpoint(tmp_path / "exp" / "trial_a" / "checkpoint_000002")
    expected = _break(checkpoint, how)
    result = _result(tmp_path, checkpoint)
    chosen = TrialCheckpoint(trial_id="trial_a", rank=1, value=1.5, uri=str(checkpoint))
    monkeypatch.setattr(export, "as_result", lambda path: result)
    monkeypatch.setattr(export, "find_trial", lambda result, trial_id: chosen)
    _assert_user_error(_sweep("export", str(tmp_path / "exp"), "--out", str(tmp_path / "out")),
                       f"error: checkpoint {checkpoint} (trial trial_a) is incomplete",
                       expected)


# --- Tune's experiment state -------------------------------------------------------------------


@pytest.mark.parametrize("command", POST_SWEEP)
def test_an_experiment_state_cut_off_mid_write(command: str, tmp_path: Path) -> None:
    experiment = _experiment(tmp_path / "cut-off", {OLDER: '{"trial_data": [["{\\"trial'})
    _assert_user_error(_sweep(*_args(command, experiment, tmp_path)),
                       f"{experiment}: no experiment state can be read ({OLDER}",
                       "restore experiment_state-*.json")
    assert not (tmp_path / "exported").exists()


def test_a_cut_off_newest_state_is_passed_over_and_left_in_place(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    experiment = _experiment(tmp_path / "exp", {OLDER: EMPTY_STATE, NEWER: '{"trial_da'})
    with caplog.at_level(logging.WARNING):
        assert newest_readable_state(open_storage(str(experiment))) == OLDER
    assert f"experiment state {NEWER} is unreadable" in caplog.text
    assert "`sweep resume` sets the unreadable one aside" in caplog.text
    assert (experiment / NEWER).exists()  # a read-only command moves nothing
    # `sweep results` reads the older state: its (empty) trial list, not a JSON traceback.
    _assert_user_error(_sweep("results", str(experiment)), "no trial reported 'eval_loss'")


def test_only_unreadable_states_is_its_own_error(tmp_path: Path) -> None:
    experiment = _experiment(tmp_path / "exp", {OLDER: "[]", NEWER: "\x00\x01"})
    with pytest.raises(CorruptExperimentStateError, match=f"{NEWER}, {OLDER}"):
        newest_readable_state(open_storage(str(experiment)))


def test_a_store_that_does_not_answer_is_no_corrupt_state(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`sweep resume` sets unreadable state aside; a read that failed is not that, so nothing
    is moved and the store's error is what the user sees."""
    from orchestrator.experiment.storage import Storage
    from orchestrator.run.resume import repair_experiment_state

    experiment = _experiment(tmp_path / "exp", {OLDER: EMPTY_STATE})

    def no_answer(self: Storage, *parts: str) -> str:
        raise StorageReadError("cannot read s3://b/exp: curlCode: 7, Could not connect")

    monkeypatch.setattr(Storage, "read_text", no_answer)
    with pytest.raises(StorageReadError):
        repair_experiment_state(open_storage(str(experiment)))
    assert (experiment / OLDER).exists() and not (experiment / "corrupt").exists()


# --- object storage ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["results", "report"])
def test_an_s3_experiment_that_cannot_be_read(command: str, tmp_path: Path,
                                              aws_env: None) -> None:
    uri = f"s3://sweeps/team/exp?region=us-east-1&endpoint_override={_nowhere()}"
    _assert_user_error(_sweep(command, uri), f"error: cannot read {uri}:", "Could not connect",
                       "endpoint_override", "AWS_ACCESS_KEY_ID")


def test_a_checkpoint_download_that_fails(tmp_path: Path, aws_env: None) -> None:
    uri = (f"s3://sweeps/team/exp/trial_a/checkpoint_000002?region=us-east-1"
           f"&endpoint_override={_nowhere()}")
    trial = TrialCheckpoint(trial_id="trial_a", rank=1, value=1.5, uri=uri)
    with pytest.raises(StorageReadError, match=r"cannot read s3://sweeps/team/exp/trial_a/"):
        trial.local(str(tmp_path / "scratch"))


def test_a_local_folders_os_error_is_left_as_it_is(tmp_path: Path) -> None:
    """Only object storage's errors are the store's; a local OSError keeps its type."""
    storage = open_storage(str(tmp_path))
    with pytest.raises(PermissionError), storage.reading():
        raise PermissionError("a local problem, or a bug")
