"""Sweeps as Ray Jobs: `sweep submit/status/logs/list/stop` against the project's own 2-node
local cluster (head + 1 worker, 1 CPU each, so two concurrent 1-CPU trials need both nodes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ledger import read_ledger  # noqa: E402
from s3_helpers import SECRET, list_keys, moto_s3
from sweep_helpers import lm_config

from cluster import jobs
from cluster.local import LocalCluster
from orchestrator.config.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
integration = pytest.mark.integration


def _sweep(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=timeout)


def _write(folder: Path, config: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def s3() -> Iterator[dict]:
    """Started before the cluster: its credentials reach every node through the environment
    the nodes start with, as an instance profile or node env would on a real cluster."""
    pytest.importorskip("boto3")
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(s3: dict) -> Iterator[LocalCluster]:
    with LocalCluster(workers=1, cpus_per_node=1) as local:
        yield local


@pytest.fixture
def client_env(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment `cluster.local up` tells a user to export (nothing from this shell's own
    Ray settings); this process gets the token path too, for direct `cluster.jobs` calls."""
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", cluster.env["RAY_AUTH_TOKEN_PATH"])
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    return {**base, **cluster.env}


def _trial_nodes(dashboard: str) -> set[str]:
    """Node ids of every Tune trial actor the cluster ran, from Ray's state API."""
    url = f"{dashboard}/api/v0/actors?limit=10000&detail=1"
    request = urllib.request.Request(url, headers=jobs.auth_headers())
    with urllib.request.urlopen(request, timeout=30) as response:
        actors = json.load(response)["data"]["result"]["result"]
    # Ray names the class by its qualified name, e.g. "wrap_function.<locals>.ImplicitFunc"
    return {a["node_id"] for a in actors if a["class_name"].split(".")[-1] == "ImplicitFunc"}


def _wait_for_log(job_id: str, address: str, needle: str, timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = "".join(jobs.logs(job_id, address))
        if needle in text:
            return text
        if jobs.status(job_id, address) in jobs.TERMINAL:
            # the log agent can lag the driver's last lines by a few seconds
            deadline = min(deadline, time.monotonic() + 20)
        time.sleep(1)
    raise AssertionError(f"{needle!r} never appeared in the logs of {job_id}:\n{text[-3000:]}")


def _wait_for_file_text(path: Path, needle: str, *, after: str, timeout_s: float = 180) -> str:
    """The text of `path` once `needle` occurs in it after `after` (the driver writes the file
    as the job ends)."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if after in text and needle in text[text.index(after):]:
            return text
        time.sleep(1)
    raise AssertionError(f"{needle!r} after {after!r} never appeared in {path}:\n{text[-3000:]}")


@integration
def test_submitted_sweep_spreads_over_both_nodes(cluster: LocalCluster, client_env: dict,
                                                 s3: dict, tiny_lm_dir: Path,
                                                 tmp_path: Path) -> None:
    storage = s3["uri"]("team")  # every node writes its checkpoints to the bucket
    config = lm_config(tiny_lm_dir, name="spread", storage_path=storage, num_samples=4,
                       search={"max_concurrent_trials": 2}, resources={"cpus_per_trial": 1},
                       train={"batch_size": 8, "max_steps": 10, "eval_every_steps": 5})
    submitted = _sweep("submit", str(_write(tmp_path / "cfg", config)), env=client_env)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job_id = submitted.stdout.strip().splitlines()[0]
    assert "Experiment: s3://sweeps/team/spread" in submitted.stderr

    followed = _sweep("logs", job_id, "--follow", env=client_env, timeout=400)  # until the end
    assert followed.returncode == 0, followed.stderr[-3000:]
    status = _sweep("status", job_id, env=client_env)
    assert f"{job_id}: SUCCEEDED" in status.stdout, status.stdout + followed.stdout[-5000:]
    assert "Best checkpoint:" in followed.stdout
    assert "Untrained model: eval_loss=" in followed.stdout
    assert job_id in _sweep("list", env=client_env).stdout

    from orchestrator.experiment.results import load_results

    result = load_results(s3["uri"]("team/spread"))
    assert len(result.trials) == 4 and set(result.trials["status"]) == {"TERMINATED"}
    keys = list_keys(s3["client"], "sweeps", "team/spread/")
    assert sum(k.endswith("adapter/adapter_model.safetensors") for k in keys) >= 4
    for key in keys:
        if not key.endswith(".safetensors"):
            body = s3["client"].get_object(Bucket="sweeps", Key=key)["Body"].read()
            assert SECRET.encode() not in body, key
    # The best checkpoint read back from the bucket loads.
    assert result.best_checkpoint.startswith("s3://sweeps/team/spread/")
    model, _ = result.load_best_model()
    assert type(model).__name__.startswith("PeftModel")
    info = cluster.info
    assert info is not None
    assert _trial_nodes(cluster.dashboard_url) == set(info.node_ids)
    assert set(result.trials["node_id"]) == set(info.node_ids)  # trials ran on both nodes


@integration
def test_stop_leaves_a_resumable_experiment(cluster: LocalCluster, client_env: dict,
                                            tiny_lm_dir: Path, tmp_path: Path) -> None:
    storage = tmp_path / "results"
    # One trial at a time: when the first finishes, seven more (reused processes make each
    # only seconds long) are left for the stop to interrupt.
    config = lm_config(tiny_lm_dir, name="stopped", storage_path=str(storage), num_samples=8,
                       baseline=False, search={"max_concurrent_trials": 1},
                       resources={"cpus_per_trial": 1}, keep_top_k_trials=None,
                       scheduler={"type": "fifo"},
                       train={"batch_size": 8, "max_steps": 60, "eval_every_steps": 10})
    job_id = jobs.submit(_write(tmp_path / "cfg", config), cluster.dashboard_url)
    # Tune has ended one trial (its last checkpoint registered), not just heard its last report.
    _wait_for_log(job_id, cluster.dashboard_url, "(1/8 trials done)")

    stopped = _sweep("stop", job_id, env=client_env)
    assert stopped.returncode == 0 and f"{job_id}: STOPPED" in stopped.stdout, stopped.stderr
    experiment = storage / "stopped"
    # Ray's and Tune's lines go to the experiment's log, not the job's (the quiet console).
    logs = _wait_for_file_text(experiment / "logs" / "ray.log",
                               "Wrote the latest version of all result files and experiment state",
                               after="Stop signal received")
    # Tune's own SIGINT handler ran, then wrote its final snapshot (not just a periodic one).
    assert "Stop signal received" in logs, logs[-3000:]
    job_logs = "".join(jobs.logs(job_id, cluster.dashboard_url))
    assert "Stop signal received" not in job_logs and "Ray's output:" in job_logs
    assert list(experiment.glob("experiment_state-*.json"))
    from ray.tune import Tuner

    assert Tuner.can_restore(str(experiment))

    # Resume it: finished trials are kept as they are, the others continue. Finished means
    # TERMINATED in the experiment's state: a trial stopped between its last report and the
    # save Tune schedules after it ends RUNNING, and redoes its last steps from its checkpoint.
    from orchestrator.experiment.results import load_results

    before = read_ledger(experiment)
    trials = load_results(str(experiment)).trials
    ended = set(trials.loc[trials["status"] == "TERMINATED", "trial_id"])
    finished = {tid: r.steps for tid, r in before.items() if tid in ended}
    assert all(steps[-1] == 60 for steps in finished.values())
    assert finished
    assert len(finished) < 8, "the sweep ended before the stop: nothing was interrupted"
    resumed = _sweep("resume", str(experiment), "--address", cluster.address, env=client_env,
                     timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = read_ledger(experiment)
    assert len(after) == 8 and len({r.key for r in after.values()}) == 8
    assert all(r.steps[-1] == 60 for r in after.values())
    for tid, steps in finished.items():
        assert after[tid].steps == steps  # not re-run


@integration
def test_commands_without_the_token_say_how_to_get_it(cluster: LocalCluster,
                                                      client_env: dict) -> None:
    no_token = {k: v for k, v in client_env.items() if not k.startswith("RAY_AUTH")}
    listed = _sweep("list", env=no_token)
    assert listed.returncode == 2
    assert "RAY_AUTH_TOKEN_PATH" in listed.stderr and "cluster.local up" in listed.stderr


def test_sigterm_takes_the_path_of_sigint() -> None:
    """The job driver's SIGTERM runs whatever SIGINT handler is installed (Tune's, during a
    sweep), and is a KeyboardInterrupt before one is; Ray's supervisor ignores SIGINT for us."""
    script = textwrap.dedent("""
        import os, signal
        from cluster.job_entry import allow_sigint, route_sigterm_to_sigint
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a job's driver starts
        allow_sigint()
        route_sigterm_to_sigint()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            print("keyboard-interrupt")
        signal.signal(signal.SIGINT, lambda *a: print("tune-handler"))  # as Tune.fit() does
        os.kill(os.getpid(), signal.SIGTERM)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.stdout.split() == ["keyboard-interrupt", "tune-handler"], proc.stderr


def test_config_travel_rule(tmp_path: Path) -> None:
    inside = jobs.package_config(ROOT / "examples" / "quickstart.yaml", base_dir_set=False)
    assert inside.working_dir == ROOT and inside.config_relpath == "examples/quickstart.yaml"
    assert inside.overrides == [] and inside.staging is None

    outside_config = _write(tmp_path / "cfg", {"task": "causal_lm"})
    outside = jobs.package_config(outside_config, base_dir_set=False)
    try:
        assert outside.config_relpath == f"{jobs.SUBMITTED_DIR}/sweep.yaml"
        assert (outside.working_dir / outside.config_relpath).exists()
        assert (outside.working_dir / "cluster" / "job_entry.py").exists()
        assert not (outside.working_dir / ".git").exists()
        assert outside.overrides == [f'base_dir="{tmp_path / "cfg"}"']
    finally:
        assert outside.staging is not None
        shutil.rmtree(outside.staging)


def test_relative_storage_path_is_refused(tiny_lm_dir: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, lm_config(tiny_lm_dir, storage_path="results"))
    with pytest.raises(ConfigError, match="storage_path: 'results' is relative"):
        jobs.submit(path, "http://127.0.0.1:9")  # refused before any request is made
