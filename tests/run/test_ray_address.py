"""A wrong Ray address for `sweep run/validate/resume` is `error: ...` naming it and the fix,
in seconds: not Ray's ConnectionError traceback after ten minutes of retries.

Fast and CPU-only: no Ray is started; `ray.init` is replaced by a stub that fails the test if a
check that should have refused the address let it through.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sweep_helpers import ROOT, lm_config

from orchestrator.cli.main import main
from orchestrator.config.errors import UserError
from orchestrator.config.loading import load_config
from orchestrator.experiment.layout import SWEEP_CONFIG_FILE
from orchestrator.run import ray_address
from orchestrator.run.errors import ClusterConnectionError
from orchestrator.run.launch import ensure_ray
from orchestrator.run.ray_log import give_back_console


@pytest.fixture(autouse=True)
def no_capture_left() -> Iterator[None]:
    """`sweep run`/`resume` below start a Ray log capture with Ray stubbed out, which no
    `ray.shutdown` ends: give the console back so later tests start without one."""
    yield
    give_back_console()


def free_port() -> int:
    """A port with nothing listening on it (bound on every interface, then released)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """No Ray in this process, and `ray.init` records its calls instead of connecting."""
    import ray

    calls: list[dict] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return calls


@pytest.fixture
def web_server() -> Iterator[int]:
    """An HTTP server on a free port (what the dashboard's port 8265 looks like)."""
    server = http.server.ThreadingHTTPServer(("", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("address", ["not-an-address", ":6379", "head:port", "head:99999",
                                     "head:6379/x", "gopher://head:6379"])
def test_an_address_ray_would_not_take(address: str, no_ray: list[dict]) -> None:
    with pytest.raises(ClusterConnectionError) as info:
        ensure_ray(address)
    message = str(info.value)
    assert f"--address {address!r} is not a Ray address" in message
    assert "HOST:PORT of the head node's GCS" in message and "`local`" in message
    assert no_ray == []


def test_a_dashboard_url_is_named_as_one(no_ray: list[dict]) -> None:
    with pytest.raises(ClusterConnectionError, match="is a dashboard .* `sweep submit` takes"):
        ensure_ray("http://127.0.0.1:8265")
    assert no_ray == []


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "localhost:{port}",
                                     "ray://127.0.0.1:{port}"])
def test_nothing_listening_fails_at_once(address: str, no_ray: list[dict]) -> None:
    address = address.format(port=free_port())
    with pytest.raises(ClusterConnectionError) as info:
        ensure_ray(address)
    message = str(info.value)
    assert message.startswith(f"cannot reach a Ray cluster at --address {address!r}: nothing "
                              "listens on ")
    assert "`ray start --head`" in message and "--address local" in message
    assert "correct --address" in message
    assert no_ray == []
    assert isinstance(info.value, UserError) and isinstance(info.value, ConnectionError)


def test_an_address_from_ray_address_is_named_so(no_ray: list[dict],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ClusterConnectionError) as info:
        ensure_ray()
    assert f"at RAY_ADDRESS {address!r}" in str(info.value)
    assert "correct RAY_ADDRESS or unset it" in str(info.value)


def test_an_unknown_host(no_ray: list[dict]) -> None:
    with pytest.raises(ClusterConnectionError, match="no host named 'no-such-host.invalid'"):
        ensure_ray("no-such-host.invalid:6379")


def test_a_web_server_is_not_a_gcs(no_ray: list[dict], web_server: int) -> None:
    with pytest.raises(ClusterConnectionError, match="is a web server .*not the cluster's GCS"):
        ensure_ray(f"127.0.0.1:{web_server}")
    assert no_ray == []


def test_auto_without_a_cluster(no_ray: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    import ray._private.services as services

    def none_running(address: str, temp_dir: str | None = None) -> str:
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(services, "canonicalize_bootstrap_address", none_running)
    with pytest.raises(ClusterConnectionError,
                       match="--address 'auto': no Ray cluster runs on this machine"):
        ensure_ray("auto")


def test_rays_connection_error_is_a_user_error_and_its_wait_is_bounded(
        no_ray: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    """Something answers that is no Ray: Ray's own ConnectionError, after fewer attempts."""
    import ray

    seen = {}

    def refuses(**kwargs: object) -> None:
        seen["attempts"] = os.environ.get(ray_address.ATTEMPTS_VAR)
        gcs = RuntimeError(  # what Ray wraps: the GCS client's traceback, as text
            "Failed to connect to GCS. Last connection error: Traceback (most recent call "
            "last):\n  File \"node.py\", line 996\nray.exceptions.AuthenticationError: RPC "
            "error: InvalidAuthToken: Authentication token is missing or incorrect. Note: "
            + "a long explanation. " * 20)
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379") from gcs

    monkeypatch.setattr(ray_address, "unreachable", lambda host, port: None)
    monkeypatch.setattr(ray, "init", refuses)
    monkeypatch.delenv(ray_address.ATTEMPTS_VAR, raising=False)
    with pytest.raises(ClusterConnectionError) as info:
        ensure_ray("10.0.0.9:6379")
    message = str(info.value)
    assert message.startswith("cannot connect to a Ray cluster at --address '10.0.0.9:6379' "
                              "(Failed to connect to Ray cluster at 10.0.0.9:6379: "
                              "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: "
                              "Authentication token is missing or incorrect.")
    assert "Traceback" not in message and len(message) < 800
    assert "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH" in message
    assert "`ray start --head`" in message
    assert isinstance(info.value.__cause__, ConnectionError)
    assert seen["attempts"] == str(ray_address.GCS_CONNECT_ATTEMPTS)
    assert ray_address.ATTEMPTS_VAR not in os.environ  # only while connecting


def test_a_bug_inside_ray_init_keeps_its_type(no_ray: list[dict],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    bug = RuntimeError("a bug deep in Ray")

    def broken(**kwargs: object) -> None:
        raise bug

    monkeypatch.setattr(ray_address, "unreachable", lambda host, port: None)
    monkeypatch.setattr(ray, "init", broken)
    with pytest.raises(RuntimeError) as info:
        ensure_ray("10.0.0.9:6379")
    assert info.value is bug


def test_local_is_never_probed(no_ray: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_address, "endpoint", lambda *a: pytest.fail("probed `local`"))
    ensure_ray("local")
    ensure_ray()  # no RAY_ADDRESS: local too
    assert [call["address"] for call in no_ray] == ["local", "local"]


# --- the commands ------------------------------------------------------------------------------


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(lm_config(tmp_path / "no-model", name="wrong-address",
                                             storage_path=str(tmp_path / "results"))))
    return path


def _experiment(tmp_path: Path) -> Path:
    """An interrupted experiment `sweep resume` would continue (its state is readable)."""
    folder = tmp_path / "results" / "interrupted"
    folder.mkdir(parents=True)
    config = load_config(lm_config(tmp_path / "no-model", name=folder.name))
    (folder / SWEEP_CONFIG_FILE).write_text(yaml.safe_dump(config.model_dump(mode="json")))
    state: dict[str, object] = {"trial_data": [], "runner_data": {}}
    (folder / "experiment_state-2026-11-21_10-00-00.json").write_text(json.dumps(state))
    return folder


@pytest.mark.parametrize("command", ["run", "validate", "resume"])
def test_commands_report_a_wrong_address(command: str, tmp_path: Path,
                                         no_ray: list[dict]) -> None:
    address = f"127.0.0.1:{free_port()}"
    target = _experiment(tmp_path) if command == "resume" else _config(tmp_path)
    result = CliRunner().invoke(main, [command, str(target), "--address", address])
    assert result.exit_code == 2, (result.output, result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    assert errors[0].startswith(f"error: cannot reach a Ray cluster at --address {address!r}: "
                                "nothing listens on ")
    assert "Traceback" not in result.output
    assert no_ray == []
    assert not (tmp_path / "results" / "wrong-address").exists()  # nothing written


def test_a_wrong_address_as_a_user_sees_it(tmp_path: Path) -> None:
    """The real process: exit 2 and one line, long before Ray's ten minutes of retries."""
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "validate",
                           str(_config(tmp_path)), "--address", address], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: cannot reach a Ray cluster at --address {address!r}")
    assert "Traceback" not in proc.stderr
