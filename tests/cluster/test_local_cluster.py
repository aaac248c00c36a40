"""`python -m cluster.local up/down`: a real 2-node cluster on loopback, token auth enforced, and
nothing left running afterwards."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cluster.local import STATE_FILE, _owned_processes, stop

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None,
         timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def _http_status(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return err.code


def _client_env(exports: dict[str, str]) -> dict[str, str]:
    """This shell's environment without any Ray address or token of its own, plus the exports."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    return {**base, **exports}


def test_up_enforces_token_and_down_stops_every_process(tmp_path: Path) -> None:
    state = tmp_path / "state"
    home_token = Path.home() / ".ray" / "auth_token"
    home_token_before = home_token.read_bytes() if home_token.exists() else None
    try:
        up = _run("-m", "cluster.local", "up", "--workers", "1", "--cpus-per-node", "1",
                  "--state-dir", str(state))
        assert up.returncode == 0, up.stdout + up.stderr
        exports = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                       for line in up.stdout.splitlines())
        assert exports["RAY_ADDRESS"].startswith("127.0.0.1:")
        dashboard = exports["RAY_API_SERVER_ADDRESS"]
        assert dashboard.startswith("http://127.0.0.1:")
        assert exports["RAY_AUTH_MODE"] == "token"
        token_file = Path(exports["RAY_AUTH_TOKEN_PATH"])
        assert token_file.parent == state and oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = token_file.read_text().strip()

        # The Jobs API refuses requests without the token, or with a wrong one.
        assert _http_status(f"{dashboard}/api/jobs/", None) == 401
        assert _http_status(f"{dashboard}/api/jobs/", "not-the-token") == 403
        assert _http_status(f"{dashboard}/api/jobs/", token) == 200

        # A plain `ray.init()` with the printed environment joins the cluster: 2 loopback nodes.
        script = ("import json, ray; ray.init(); print(json.dumps([[n['NodeManagerAddress'], "
                  "n['Alive'], n['Resources'].get('CPU')] for n in ray.nodes()]))")
        client = _run("-c", script, env=_client_env(exports), timeout=120)
        assert client.returncode == 0, client.stderr[-3000:]
        assert json.loads(client.stdout.splitlines()[-1]) == [["127.0.0.1", True, 1.0]] * 2

        # A second cluster in the same state folder is refused with what to do instead.
        again = _run("-m", "cluster.local", "up", "--state-dir", str(state))
        assert again.returncode != 0 and "cluster.local down" in again.stderr

        info = json.loads((state / STATE_FILE).read_text())
        started = _owned_processes(info["ray_dir"], info["holder_pid"])
        names = sorted(p.name() for p in started)
        assert names.count("raylet") == 2 and "gcs_server" in names, names

        down = _run("-m", "cluster.local", "down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
        assert not [p for p in started if p.is_running() and p.status() != "zombie"]
        assert not Path(info["ray_dir"]).exists() and not (state / STATE_FILE).exists()
    finally:
        stop(state)  # no-op after a clean `down`; kills everything if an assertion failed
    assert (home_token.read_bytes() if home_token.exists() else None) == home_token_before
