"""A real multi-node Ray cluster on one machine: a head and N workers, token auth on, loopback only.

    python -m cluster.local up --workers 1 --cpus-per-node 1   # prints the `export` lines to use
    python -m cluster.local down                               # stops every process it started

A detached "holder" process owns the nodes (`ray.cluster_utils.Cluster`: `ray start` rewrites
`--node-ip-address=127.0.0.1` to the interface address). What several nodes on one machine
need, each found by experiment:
  - `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` in every process, nodes and clients: otherwise Ray
    turns 127.0.0.1 into the interface address and nothing reaches the loopback-bound GCS;
  - one `runtime_resources` folder per node: nodes sharing one re-extract a job's working_dir
    under the running driver, whose deleted cwd then kills torch ("oneMKL FATAL ERROR");
  - a private Ray temp dir (`RAY_TMPDIR`): jobs find their GCS through its `ray_current_cluster`
    file, and other Ray users on the machine never find this cluster;
  - an explicit token file in the state folder (`RAY_AUTH_TOKEN_PATH`), never ~/.ray/auth_token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import psutil  # a Ray dependency

from cluster.errors import LocalClusterError

DEFAULT_STATE_DIR = Path("~/.cache/sweep-orchestrator/local-cluster").expanduser()
STATE_FILE, HOLDER_FILE, LOG_FILE = "cluster.json", "holder.json", "holder.log"
TOKEN_FILE = "auth_token"
_LOOPBACK = "127.0.0.1"
_HOLD = "import sys; from cluster.local import _hold; _hold(*sys.argv[1:])"  # holder's command


@dataclass
class ClusterInfo:
    state_dir: str
    ray_dir: str  # Ray's temp dir for this cluster (sessions, logs, sockets); also its marker
    gcs_address: str
    dashboard_url: str
    token_path: str
    holder_pid: int
    node_ids: list[str]

    @property
    def address(self) -> str:
        return self.gcs_address  # what `ray.init` takes; `dashboard_url` is for the Jobs API

    @property
    def env(self) -> dict[str, str]:
        """What a client needs: `ray.init()`, `ray job ...`, `sweep submit ...` all read these."""
        return {"RAY_ADDRESS": self.gcs_address, "RAY_API_SERVER_ADDRESS": self.dashboard_url,
                "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_path,
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((_LOOPBACK, 0))
        return int(s.getsockname()[1])


def _holder(state_dir: Path) -> tuple[int | None, str | None]:
    """The holder's pid and Ray dir, recorded before it starts (so even a failed start stops)."""
    path = state_dir / HOLDER_FILE
    record = json.loads(path.read_text()) if path.exists() else {}
    return record.get("pid"), record.get("ray_dir")


def _owned_processes(ray_dir: str, holder_pid: int | None) -> list[Any]:
    """Every live process this cluster started: the holder's descendants, plus whatever still
    carries `RAY_TMPDIR=<ray_dir>` (a job driver outlives its parent); nothing else has it."""
    owned: dict[int, Any] = {}
    if holder_pid is not None and _running(holder_pid, holder=True):
        owned.update((p.pid, p) for p in psutil.Process(holder_pid).children(recursive=True))
    for proc in psutil.process_iter():
        try:
            # Processes that rename themselves (ray::*, dashboard modules) may read as empty.
            if proc.environ().get("RAY_TMPDIR") == ray_dir and proc.pid != os.getpid():
                owned.setdefault(proc.pid, proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return list(owned.values())


def start(state_dir: Path | str | None = None, workers: int = 1, cpus_per_node: float = 1,
          timeout_s: float = 120, wrapper: list[str] | None = None) -> ClusterInfo:
    """Start the holder process and wait until every node has joined and the Jobs API answers.

    `wrapper`: a command prefix the holder (and so every node) runs under, e.g. `unshare -m ...`
    to give the nodes a different view of the file system than this machine's in tests.
    """
    state = Path(state_dir or DEFAULT_STATE_DIR).expanduser().resolve()
    state.mkdir(parents=True, exist_ok=True)
    pid, _ = _holder(state)
    if pid is not None and _running(pid, holder=True):
        raise LocalClusterError(
            f"a local cluster already runs from {state} (holder pid {pid}); stop it first: "
            f"python -m cluster.local down --state-dir {state}")
    for name in (STATE_FILE, HOLDER_FILE):
        (state / name).unlink(missing_ok=True)
    token_path = state / TOKEN_FILE
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    # Unix socket paths must stay under ~107 bytes, so Ray's own folder is short and in /tmp.
    ray_root = tempfile.mkdtemp(prefix="rlc-", dir="/tmp")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_ADDRESS", "RAY_AUTH_", "RAY_API_SERVER"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path), RAY_TMPDIR=ray_root,
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(state / LOG_FILE, "w") as log:
        holder = subprocess.Popen(
            [*(wrapper or []), sys.executable, "-c", _HOLD, str(state), str(workers),
             str(cpus_per_node)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that ran `up`; Ctrl+C there won't hit it
        )
    (state / HOLDER_FILE).write_text(json.dumps({"pid": holder.pid, "ray_dir": ray_root}))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (state / STATE_FILE).exists():
            return ClusterInfo(**json.loads((state / STATE_FILE).read_text()))
        if holder.poll() is not None:
            break
        time.sleep(0.5)
    tail = (state / LOG_FILE).read_text()[-3000:]
    stop(state, keep_logs=True)
    raise LocalClusterError(
        f"local cluster did not come up within {timeout_s:.0f}s (Ray's logs: {ray_root}); "
        f"holder log ({state / LOG_FILE}) ends with:\n{tail}")


def _running(proc: Any, holder: bool = False) -> bool:
    """Alive, not a zombie, and (`holder`) not an unrelated process that reused the pid."""
    try:
        proc = psutil.Process(proc) if isinstance(proc, int) else proc
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
                    and (not holder or "cluster.local" in " ".join(proc.cmdline())))
    except psutil.NoSuchProcess:
        return False


def stop(state_dir: Path | str | None = None, *, keep_logs: bool = False,
         grace_s: float = 20) -> int:
    """Stop the cluster of `state_dir`: SIGTERM the holder (it shuts the nodes down), then kill
    whatever this cluster started that is still alive. Returns how many had to be killed."""
    state = Path(state_dir or DEFAULT_STATE_DIR).expanduser().resolve()
    pid, ray_dir = _holder(state)
    started = _owned_processes(ray_dir, pid) if ray_dir else []
    if pid is not None and _running(pid, holder=True):
        started.append(psutil.Process(pid))
        os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
            psutil.Process(pid).wait(grace_s)
    leftovers = {p.pid: p for p in started if _running(p)}
    leftovers.update((p.pid, p) for p in (_owned_processes(ray_dir, pid) if ray_dir else []))
    for proc in leftovers.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(list(leftovers.values()), timeout=10)
    if ray_dir and not keep_logs:
        shutil.rmtree(ray_dir, ignore_errors=True)
    for name in (STATE_FILE, HOLDER_FILE):
        (state / name).unlink(missing_ok=True)
    return len(leftovers)


def _wait_for_jobs_api(url: str, token: str, timeout_s: float) -> None:
    request = urllib.request.Request(f"{url}/api/jobs/",
                                     headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(request, timeout=5).close()  # raises unless it answers 2xx
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _hold(state_dir: str, workers: str, cpus_per_node: str) -> None:
    """Run inside the holder: start the nodes, publish the addresses, shut down on SIGTERM."""
    from ray.cluster_utils import Cluster

    state = Path(state_dir)
    ray_dir = os.path.join(os.environ["RAY_TMPDIR"], "ray")  # Ray's default under RAY_TMPDIR
    os.makedirs(ray_dir, exist_ok=True)
    common: dict[str, Any] = {
        "node_ip_address": _LOOPBACK, "num_cpus": float(cpus_per_node), "num_gpus": 0,
        "temp_dir": ray_dir, "dashboard_agent_listen_port": None,  # None: a free port each
    }
    cluster = Cluster(initialize_head=True, head_node_args={
        **common, "gcs_server_port": _free_port(), "include_dashboard": True,
        "dashboard_host": _LOOPBACK, "dashboard_port": _free_port(),
        "runtime_env_dir_name": "runtime_resources_node0",
    })

    def shutdown(signum: int, frame: Any) -> None:
        cluster.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    for index in range(1, int(workers) + 1):
        cluster.add_node(**common, runtime_env_dir_name=f"runtime_resources_node{index}")
    cluster.wait_for_nodes(timeout=60)
    dashboard_url = f"http://{cluster.webui_url}"
    token_path = state / TOKEN_FILE
    _wait_for_jobs_api(dashboard_url, token_path.read_text().strip(), timeout_s=60)
    nodes = [n for n in cluster.global_state.node_table() if n["Alive"]]
    info = ClusterInfo(state_dir=str(state), ray_dir=os.environ["RAY_TMPDIR"],
                       gcs_address=cluster.gcs_address, dashboard_url=dashboard_url,
                       token_path=str(token_path), holder_pid=os.getpid(),
                       node_ids=[n["NodeID"] for n in nodes])
    tmp = state / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(info), indent=2))
    tmp.replace(state / STATE_FILE)  # atomic: `start()` never reads half a file
    while True:
        signal.pause()


class LocalCluster:
    """A local multi-node cluster for the length of a `with` block (tests, notebooks).

    >>> with LocalCluster(workers=1, cpus_per_node=1) as c:  # doctest: +SKIP
    ...     subprocess.run(["sweep", "submit", "s.yaml"], env={**os.environ, **c.env})
    """

    def __init__(self, workers: int = 1, cpus_per_node: float = 1,
                 state_dir: Path | str | None = None, keep_logs: bool = False,
                 timeout_s: float = 120, wrapper: list[str] | None = None) -> None:
        self.workers, self.cpus_per_node, self.timeout_s = workers, cpus_per_node, timeout_s
        self.wrapper = wrapper
        self.keep_logs = keep_logs
        self._temporary_state = state_dir is None  # made here, so removed here
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="local-cluster-"))
        self.info: ClusterInfo | None = None

    def __enter__(self) -> LocalCluster:
        self.info = start(self.state_dir, self.workers, self.cpus_per_node, self.timeout_s,
                          self.wrapper)
        return self

    def __exit__(self, *exc_info: object) -> None:
        stop(self.state_dir, keep_logs=self.keep_logs)
        if self._temporary_state and not self.keep_logs:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __getattr__(self, name: str) -> Any:
        """`address`, `dashboard_url`, `env`, `node_ids`...: those of the running cluster."""
        if name == "info" or self.info is None:
            raise AttributeError(f"{name}: the cluster is not running; use `with LocalCluster()`")
        return getattr(self.info, name)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Start and stop a multi-node Ray cluster on this machine (loopback only, token auth)."""


_STATE_OPTION = click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                             help=f"Where the token and addresses live [{DEFAULT_STATE_DIR}].")


@main.command()
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=0),
              help="Worker nodes besides the head.")
@click.option("--cpus-per-node", default=1.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="CPUs each node offers.")
@_STATE_OPTION
def up(workers: int, cpus_per_node: float, state_dir: str | None) -> None:
    """Start the cluster; print `export` lines (stdout) for `eval "$(... up)"`."""
    try:
        info = start(state_dir, workers, cpus_per_node)
    except LocalClusterError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"Local Ray cluster up: head + {workers} worker(s), {cpus_per_node:g} CPU each\n"
               f"  GCS address: {info.gcs_address}\n  Jobs API:    {info.dashboard_url}\n"
               f"  Stop it:     python -m cluster.local down --state-dir {info.state_dir}",
               err=True)
    for key, value in info.env.items():
        click.echo(f"export {key}={shlex.quote(value)}")


@main.command()
@_STATE_OPTION
@click.option("--keep-logs", is_flag=True, help="Keep Ray's logs folder.")
def down(state_dir: str | None, keep_logs: bool) -> None:
    """Stop the cluster and every process it started (other Ray instances are left alone)."""
    killed = stop(state_dir, keep_logs=keep_logs)
    click.echo(f"Local cluster stopped ({killed} leftover process(es) killed).", err=True)


if __name__ == "__main__":
    main()
