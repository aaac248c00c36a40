"""Run sweeps as Ray Jobs on a cluster: submit, status, logs, stop, list.

    >>> job_id = submit("examples/quickstart.yaml", "http://127.0.0.1:8265")  # doctest: +SKIP
    >>> print("".join(logs(job_id, "http://127.0.0.1:8265", follow=True)))   # doctest: +SKIP

What travels with a job: the project folder (`working_dir`, less `PACKAGE_EXCLUDES` and what
.gitignore lists) and the config. The rule for the config and its relative paths:
  - a config inside the project travels at its place in the project; its relative data/model
    paths resolve inside the uploaded copy, so data kept in the project travels with it;
  - a config outside the project is copied into the package (`_submitted/`), and `base_dir` is
    pinned to its folder on this machine: its relative paths must be readable at that same path
    on the cluster (a shared filesystem, or a cluster on this machine). A warning says so.
  - absolute paths are used as they are, on the cluster; `storage_path` must be absolute (or
    ~/..., s3://...), since a relative one would land in the job's temporary working folder.

Token auth: the token in RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, is sent as
`Authorization: Bearer ...` with every request, whether or not RAY_AUTH_MODE is set here.

Stopping: Ray's Jobs API signals the driver, then SIGKILLs it `RAY_JOB_STOP_WAIT_TIME_S` later.
The job's runtime env asks for SIGINT (Tune's own "stop and save" signal) and a longer wait, and
`cluster.job_entry` turns a SIGTERM into the same, so a stopped sweep can be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.errors import ClusterError
from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config, read_yaml
from orchestrator.experiment.errors import ExperimentExistsError
from orchestrator.experiment.layout import SWEEP_CONFIG_FILE

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Never needed by a sweep, and large: VCS data, caches, build output, local virtualenvs.
PACKAGE_EXCLUDES = [".git", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache",
                    ".mypy_cache", ".benchmarks", ".venv", "venv", "build", "dist", ".device",
                    ".whl"]
SUBMITTED_DIR = "_submitted"
STOP_WAIT_S = 60  # SIGINT -> SIGKILL: time for Tune to stop trials and write its snapshot
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


@dataclass
class Package:
    """What `submit` uploads: a folder, the config's path inside it, extra `--set` overrides."""

    working_dir: Path
    config_relpath: str
    overrides: list[str] = field(default_factory=list)
    staging: Path | None = None  # a temporary copy to delete after the upload


def auth_headers() -> dict[str, str]:
    """The bearer token header: RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH (Ray's order)."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not token and path:
        token_file = Path(path).expanduser()
        if not token_file.is_file():
            raise ClusterError(
                f"RAY_AUTH_TOKEN_PATH={path!r} does not exist; point it at the cluster's token "
                "file (`python -m cluster.local up` prints it for a local cluster), or unset it"
            )
        token = token_file.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextlib.contextmanager
def _errors(address: str) -> Iterator[None]:
    from ray.exceptions import AuthenticationError, RpcError

    try:
        yield
    except AuthenticationError:
        raise ClusterError(
            f"the cluster at {address} refused the auth token (missing or wrong): export "
            "RAY_AUTH_TOKEN_PATH=FILE (or RAY_AUTH_TOKEN=...) and RAY_AUTH_MODE=token; "
            "`python -m cluster.local up` prints them for a local cluster"
        ) from None
    except ConnectionError as err:
        raise ClusterError(
            f"cannot reach the Ray Jobs API at {address} ({err}); is the cluster up? Use the "
            "dashboard address, e.g. --address http://HEAD:8265, not the GCS port"
        ) from None
    except RpcError as err:  # HOST:PORT is taken for a GCS address, asked for the dashboard's
        raise ClusterError(
            f"no Ray cluster answers at {address} ({err}); is it up? Give the Ray Jobs API "
            "(dashboard) address, e.g. --address http://HEAD:8265"
        ) from None
    except RuntimeError as err:  # how Ray's Jobs client reports a refused request
        if isinstance(err, ClusterError):
            raise
        raise ClusterError(
            f"the Ray Jobs API at {address} refused the request: {err} (a job id that does not "
            "exist? `sweep list` shows the cluster's jobs)"
        ) from err


def check_address(address: str) -> None:
    """The forms Ray's Jobs client takes: http(s)://HOST:PORT (the dashboard), HOST:PORT (a GCS
    address, asked for the dashboard's) and `auto`; anything else fails only after a timeout."""
    example = "--address http://HEAD:8265"
    scheme, sep, _ = address.partition("://")
    if sep and scheme == "ray":
        raise ClusterError(f"--address {address!r} is a Ray Client address; jobs go to the Ray "
                           f"Jobs API, which is the dashboard's address: {example}")
    if sep and scheme not in ("http", "https"):
        raise ClusterError(f"--address {address!r}: the Ray Jobs API is reached over http, "
                           f"e.g. {example}")
    if sep or address == "auto":
        return
    host, colon, port = address.rpartition(":")
    if "/" in address or not host or not port.isdigit():
        fix = (f"--address http://{address}:8265" if not colon and "/" not in address
               else example)
        raise ClusterError(f"--address {address!r} is not an address of the Ray Jobs API"
                           f"{' (no port)' if not colon else ''}; write it as {fix}")


def _client(address: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    check_address(address)
    with _errors(address):
        return JobSubmissionClient(address, headers=auth_headers())


def _is_excluded(root: Path, relpath: Path) -> bool:
    if any(fnmatch.fnmatch(part, pattern) for part in relpath.parts
           for pattern in PACKAGE_EXCLUDES):
        return True
    try:  # .gitignore is applied by Ray's packaging too
        return subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(relpath)],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def package_config(config: Path, base_dir_set: bool, root: Path = PROJECT_ROOT) -> Package:
    """Where the config sits in the uploaded package (see the module docstring for the rule)."""
    config = config.resolve()
    if config.is_relative_to(root) and not _is_excluded(root, config.relative_to(root)):
        return Package(root, config.relative_to(root).as_posix())
    staging = Path(tempfile.mkdtemp(prefix="sweep-submit-"))
    package = staging / "project"
    shutil.copytree(root, package, ignore=shutil.ignore_patterns(*PACKAGE_EXCLUDES))
    (package / SUBMITTED_DIR).mkdir(exist_ok=True)
    shutil.copy2(config, package / SUBMITTED_DIR / config.name)
    # JSON-quoted, so the YAML parser of --set reads any path back as a string.
    overrides = [] if base_dir_set else [f"base_dir={json.dumps(str(config.parent))}"]
    log.warning("%s is outside the project, so it is copied into the job; its relative paths "
                "are read from %s, which the cluster's nodes must see at that same path",
                config, config.parent)
    return Package(package, f"{SUBMITTED_DIR}/{config.name}", overrides, staging)


def _check_storage(storage_path: str) -> None:
    if "://" not in storage_path and not os.path.isabs(os.path.expanduser(storage_path)):
        raise ConfigError([f"storage_path: {storage_path!r} is relative; in a job it would "
                           "land in the job's temporary working folder. Use an absolute path, "
                           "~/..., or s3://bucket/prefix"])


def submit(config: str | Path, address: str, overrides: list[str] | None = None) -> str:
    """Validate CONFIG here, upload the project and run the sweep as a Ray Job; the job id.

    The experiment name is fixed here (config name + time unless set), so the job's metadata
    says where results go: `job_info(job_id, address).metadata["experiment"]`.
    """
    overrides = list(overrides or [])
    path = Path(config)
    cfg = load_config(path, overrides)  # fail here, not minutes later on the cluster
    _check_storage(cfg.storage_path)
    if not any(o.partition("=")[0].strip() == "name" for o in overrides):
        overrides.append(f"name={json.dumps(cfg.name)}")
    assert cfg.name is not None
    from orchestrator.experiment.storage import open_storage

    storage = open_storage(cfg.storage_path)
    experiment = storage.uri_of(cfg.name)
    if storage.exists(cfg.name, SWEEP_CONFIG_FILE):  # as seen from here
        raise ExperimentExistsError(f"experiment {experiment!r} already exists; choose another "
                              "`name` (or --set name=...)")
    raw = read_yaml(path.read_text()) or {}
    pinned = "base_dir" in raw or any(o.partition("=")[0].strip() == "base_dir" for o in overrides)
    package = package_config(path, pinned)
    args = [package.config_relpath] + [a for o in package.overrides + overrides
                                       for a in ("--set", o)]
    runtime_env = {
        "working_dir": str(package.working_dir),
        "excludes": PACKAGE_EXCLUDES,
        # Read by the job supervisor from the job's own env: stop with SIGINT, wait longer.
        "env_vars": {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_WAIT_S)},
    }
    metadata = {"experiment": experiment, "config": str(path.resolve())}
    try:
        client = _client(address)
        with _errors(address):
            return str(client.submit_job(
                entrypoint=shlex.join(["python", "-m", "cluster.job_entry", *args]),
                runtime_env=runtime_env, metadata=metadata,
            ))
    finally:
        if package.staging is not None:
            shutil.rmtree(package.staging, ignore_errors=True)


def job_info(job_id: str, address: str) -> Any:
    """Ray's `JobDetails`: status, message, times, entrypoint, metadata["experiment"]."""
    client = _client(address)
    with _errors(address):
        return client.get_job_info(job_id)


def status(job_id: str, address: str) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    return str(job_info(job_id, address).status.value)


def logs(job_id: str, address: str, follow: bool = False) -> Iterator[str]:
    """The job's output in chunks: what it printed so far, or (follow) until the job ends."""
    client = _client(address)
    with _errors(address):
        if not follow:
            yield client.get_job_logs(job_id)
            return
        loop = asyncio.new_event_loop()
        stream = client.tail_job_logs(job_id)
        try:
            while True:
                try:
                    yield loop.run_until_complete(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            with contextlib.suppress(Exception):  # e.g. Ctrl+C left the stream mid-read
                loop.run_until_complete(stream.aclose())
            loop.close()


def stop(job_id: str, address: str, wait: bool = True, timeout_s: float = STOP_WAIT_S + 30,
         poll_s: float = 1.0) -> str:
    """Ask the job to stop (Tune saves the experiment state) and, with `wait`, return its final
    status once the driver has exited."""
    import time

    client = _client(address)
    with _errors(address):
        client.stop_job(job_id)
        deadline = time.monotonic() + timeout_s
        current = str(client.get_job_status(job_id).value)
        while wait and current not in TERMINAL and time.monotonic() < deadline:
            time.sleep(poll_s)
            current = str(client.get_job_status(job_id).value)
        return current


def list_jobs(address: str) -> list[Any]:
    """Every job the cluster knows, oldest first, as Ray's `JobDetails`."""
    client = _client(address)
    with _errors(address):
        return sorted(client.list_jobs(), key=lambda job: job.start_time or 0)
