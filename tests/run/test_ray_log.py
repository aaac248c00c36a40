"""Ray's output goes to EXPERIMENT/logs/ray.log, not the console: the driver's `ray` loggers
and the worker output Ray forwards, fed here through Ray's own logger and dispatcher objects
(no Ray started). The whole path through `sweep run` is in tests/cli/test_quiet_console.py."""

from __future__ import annotations

import logging
import os
from collections import deque
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import ray
from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

from orchestrator.config.errors import ConfigError
from orchestrator.experiment.storage import Storage
from orchestrator.run import ray_log as ray_log_module
from orchestrator.run.ray_log import RayLog, give_back_console, tune_console_off, worker_lines

BATCH = {"ip": "10.0.0.2", "pid": 4242, "task_name": "train_causal_lm", "is_err": True,
         "lines": ["\x1b[36mCheckpoint successfully created at: /x/checkpoint_000000\x1b[0m"]}


@pytest.fixture(autouse=True)
def fresh_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with the process's capture unused (an earlier test's sweep, with Ray
    stubbed, may have left one on)."""
    give_back_console()
    monkeypatch.setattr(ray_log_module, "_CAPTURE", ray_log_module._Capture())


@pytest.fixture(autouse=True)
def ray_logger_levels() -> Any:
    """The loggers these tests write to, at their default level: an earlier test in the same
    process may have silenced one (benchmarks.curves.compare.quiet_tune sets ray.tune.tune to
    ERROR), and the capture should see what Ray would log."""
    names = ("ray", "ray.tune.tune", "ray._private.worker")
    saved = {name: logging.getLogger(name).level for name in names}
    for name in names[1:]:
        logging.getLogger(name).setLevel(logging.NOTSET)  # inherit from "ray"
    logging.getLogger("ray").setLevel(logging.INFO)
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def ray_printer(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Ray's console printer for worker output, as `ray.init(log_to_driver=True)` installs it;
    the caller's Ray session is 'already connected', so the console is given back at the end."""
    give_back_console()  # an earlier test's sweep (Ray stubbed) may have left the capture on
    printed: list[Any] = []
    dispatcher.add_handler("ray_print_logs", printed.append)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    yield printed
    give_back_console()  # the capture is the process's: the next test starts without one
    dispatcher.remove_handler("ray_print_logs")
    dispatcher.remove_handler("sweep_ray_log")


@pytest.fixture
def ray_shutdown(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`ray.shutdown` doing what Ray's does to the driver's output: its console printer goes,
    Ray is no longer initialized. Set before a sweep starts, so the capture watches this one."""
    calls: list[str] = []

    def shutdown(**_: Any) -> None:
        calls.append("shutdown")
        dispatcher.remove_handler("ray_print_logs")
        monkeypatch.setattr(ray, "is_initialized", lambda: False)

    monkeypatch.setattr(ray, "shutdown", shutdown)
    return calls


def _names() -> list[str]:
    return [name for name, _ in dispatcher.handlers]


def test_ray_lines_go_to_the_experiment_log_not_the_console(
        tmp_path: Path, ray_printer: list[Any], capfd: pytest.CaptureFixture[str]) -> None:
    ray_logger = logging.getLogger("ray")
    handlers_before = list(ray_logger.handlers)
    with RayLog(title="sweep run t") as ray_log:
        logging.getLogger("ray._private.worker").info("Started a local Ray instance.")
        ray_log.capture_workers()
        dispatcher.emit(BATCH)  # before the folder is known: held
        assert not (tmp_path / "exp").exists()
        ray_log.attach(str(tmp_path / "exp"))
        logging.getLogger("ray.tune.tune").info("Wrote the latest version of all result files")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert ray_printer == []  # Ray's own printer never saw the worker output
    log = tmp_path / "exp" / "logs" / "ray.log"
    assert ray_log.location == str(log)
    lines = log.read_text().splitlines()
    assert lines[0].startswith("=== sweep run t, ")
    assert "INFO ray._private.worker: Started a local Ray instance." in lines[1]
    assert lines[2] == ("(train_causal_lm pid=4242, ip=10.0.0.2) stderr Checkpoint "
                        "successfully created at: /x/checkpoint_000000")
    assert "Wrote the latest version" in lines[3]
    # The caller's Ray session gets its console back.
    assert ray_logger.handlers == handlers_before
    dispatcher.emit(BATCH)
    assert ray_printer == [BATCH]


def test_a_resumed_sweep_appends(tmp_path: Path, ray_printer: list[Any]) -> None:
    for title in ("sweep run t", "sweep resume t"):
        with RayLog(title=title) as ray_log:
            ray_log.attach(str(tmp_path))
            logging.getLogger("ray.tune").warning(title)
    text = (tmp_path / "logs" / "ray.log").read_text()
    assert text.index("=== sweep run t") < text.index("=== sweep resume t")
    assert text.count("WARNING ray.tune:") == 2


def test_lines_before_a_failure_are_printed_unless_the_user_erred(
        tmp_path: Path, ray_printer: list[Any], capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), RayLog():
        logging.getLogger("ray").warning("GCS is not reachable")
        raise RuntimeError("ray.init failed")
    assert "GCS is not reachable" in capfd.readouterr().err  # what Ray said may be why
    with pytest.raises(ConfigError), RayLog():
        logging.getLogger("ray").warning("Started a local Ray instance.")
        raise ConfigError(["name: already exists"], "sweep")
    assert capfd.readouterr().err == ""  # the error message says it all


def test_verbose_leaves_the_console_alone(tmp_path: Path, ray_printer: list[Any]) -> None:
    handlers_before = list(logging.getLogger("ray").handlers)
    with RayLog(verbose=True) as ray_log:
        assert logging.getLogger("ray").handlers == handlers_before
        ray_log.capture_workers()
        ray_log.attach(str(tmp_path))
        dispatcher.emit(BATCH)
    assert ray_printer == [BATCH] and ray_log.location is None
    assert not (tmp_path / "logs").exists()


def test_a_ray_started_for_the_sweep_keeps_logging_to_the_file_until_it_shuts_down(
        tmp_path: Path, ray_printer: list[Any], ray_shutdown: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ray_logger = logging.getLogger("ray")
    handlers_before = list(ray_logger.handlers)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # launch() will start Ray
    with RayLog() as ray_log:
        ray_log.capture_workers()
        ray_log.attach(str(tmp_path))
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # ... and left it running
    dispatcher.emit(BATCH)  # a trial's last lines arrive after the sweep's end
    assert ray_printer == []
    log = tmp_path / "logs" / "ray.log"
    assert "Checkpoint successfully created" in log.read_text()
    ray.shutdown()  # the caller's, as in a notebook: gives the console back
    assert ray_shutdown == ["shutdown"]
    assert ray_logger.handlers == handlers_before
    assert _names() == []  # Ray removed its printer; the next ray.init adds its own
    logging.getLogger("ray").warning("after the shutdown")
    assert "after the shutdown" not in log.read_text()


def test_two_sweeps_in_one_process_each_log_to_their_own_file(
        tmp_path: Path, ray_printer: list[Any], ray_shutdown: list[str],
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """launch() twice in a notebook: the first starts Ray, the second joins it."""
    ray_logger = logging.getLogger("ray")
    handlers_before = list(ray_logger.handlers)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def sweep(name: str) -> None:
        with RayLog(title=f"sweep run {name}") as ray_log:
            monkeypatch.setattr(ray, "is_initialized", lambda: True)  # ensure_ray
            ray_log.capture_workers()
            logging.getLogger("ray.tune").warning(f"{name}: before attach")
            dispatcher.emit({**BATCH, "lines": [f"{name}: trial, before attach"]})
            ray_log.attach(str(tmp_path / name))
            logging.getLogger("ray.tune").warning(f"{name}: driver")
            dispatcher.emit({**BATCH, "lines": [f"{name}: trial"]})
        dispatcher.emit({**BATCH, "lines": [f"{name}: trial, late"]})

    sweep("first")
    sweep("second")
    first = (tmp_path / "first" / "logs" / "ray.log").read_text()
    second = (tmp_path / "second" / "logs" / "ray.log").read_text()
    for line in ("before attach", "driver", "trial, before attach", "trial", "trial, late"):
        assert f"first: {line}" in first and f"second: {line}" in second
    assert "second" not in first and "first" not in second
    assert ray_printer == [] and capfd.readouterr() == ("", "")
    assert _names() == ["sweep_ray_log"]  # one capture, not one per sweep
    assert ray_log_module._CAPTURE._pending == deque()
    ray.shutdown()
    assert ray_logger.handlers == handlers_before and _names() == []
    logging.getLogger("ray").warning("third: after the shutdown")
    assert "third" not in (tmp_path / "second" / "logs" / "ray.log").read_text()
    assert ray_log_module._CAPTURE._pending == deque()  # nothing held once released


def test_a_sweep_joining_the_callers_ray_gives_the_console_back_at_its_end(
        tmp_path: Path, ray_printer: list[Any]) -> None:
    with RayLog() as ray_log:
        ray_log.capture_workers()
        ray_log.attach(str(tmp_path))
    for _ in range(3):
        dispatcher.emit(BATCH)  # the caller's own tasks, after the sweep: their console
    assert ray_printer == [BATCH] * 3
    assert _names() == ["ray_print_logs"]
    assert ray_log_module._CAPTURE._pending == deque()  # and nothing held for a closed file
    assert "Checkpoint" not in (tmp_path / "logs" / "ray.log").read_text()


def test_lines_held_before_the_log_has_a_place_are_capped(
        tmp_path: Path, ray_printer: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_log_module, "MAX_PENDING_LINES", 3)
    with RayLog() as ray_log:
        ray_log.capture_workers()
        dispatcher.emit({**BATCH, "lines": [f"line {i}" for i in range(5)]})
        assert len(ray_log_module._CAPTURE._pending) == 3
        ray_log.attach(str(tmp_path))
    lines = (tmp_path / "logs" / "ray.log").read_text().splitlines()
    assert lines[1] == ("(2 earlier lines dropped: only the last 3 are held until the log has "
                        "a place)")
    assert [line[-6:] for line in lines[2:]] == ["line 2", "line 3", "line 4"]  # the last 3


def test_a_verbose_sweep_ends_an_earlier_sweeps_capture(
        tmp_path: Path, ray_printer: list[Any], ray_shutdown: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with RayLog() as ray_log:
        monkeypatch.setattr(ray, "is_initialized", lambda: True)
        ray_log.capture_workers()
        ray_log.attach(str(tmp_path))
    with RayLog(verbose=True):
        dispatcher.emit(BATCH)
    assert ray_printer == [BATCH]
    assert "Checkpoint" not in (tmp_path / "logs" / "ray.log").read_text()


def test_object_storage_log_is_written_here_and_uploaded(
        tmp_path: Path, ray_printer: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    remote = Storage(uri="s3://sweeps/exp?region=x",
                     fs=pafs.SubTreeFileSystem(str(bucket), pafs.LocalFileSystem()),
                     root="sweeps/exp")
    monkeypatch.setattr(ray_log_module, "open_storage", lambda uri: remote)
    monkeypatch.setattr(ray_log_module.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    for title in ("sweep run exp", "sweep resume exp"):
        with RayLog(title=title) as ray_log:
            ray_log.attach("s3://sweeps/exp?region=x")
            logging.getLogger("ray").info(f"{title} said this")
    assert ray_log.location == "s3://sweeps/exp/logs/ray.log?region=x"
    assert ray_log.local_path == tmp_path / "tmp" / "sweep-logs" / "exp" / "ray.log"
    uploaded = (bucket / "sweeps" / "exp" / "logs" / "ray.log").read_text()
    assert uploaded.index("sweep run exp said this") < uploaded.index("sweep resume exp said")


def test_worker_lines_are_prefixed_like_rays_console() -> None:
    assert worker_lines({**BATCH, "is_err": False, "task_name": None, "actor_name": "Trial",
                         "lines": ["a", "b\r"]}) == ["(Trial pid=4242, ip=10.0.0.2) a",
                                                     "(Trial pid=4242, ip=10.0.0.2) b"]
    assert worker_lines({"pid": "raylet", "ip": "1.2.3.4", "lines": ["x"]}) == [
        "(raylet, ip=1.2.3.4) x"]


def test_tune_console_off_sets_the_legacy_engine_only_during_fit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    with tune_console_off():
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "1")
    with tune_console_off():
        pass
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "1"
