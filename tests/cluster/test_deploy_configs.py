"""The deployable cluster configs, checked as far as can be done offline."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from orchestrator.config.loading import load_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"


def _containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_cloud_launcher_yaml_matches_rays_schema() -> None:
    import jsonschema

    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    config = yaml.safe_load((CLUSTER / "cloud" / "aws-gpu.yaml").read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    assert config["head_node_type"] in config["available_node_types"]


def test_cloud_launcher_turns_on_token_auth_and_keeps_ports_private() -> None:
    config = yaml.safe_load((CLUSTER / "cloud" / "aws-gpu.yaml").read_text())
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in worker
    assert "--dashboard-host=127.0.0.1" in head
    assert any("ray_auth_token" in target for target in config["file_mounts"])


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_are_well_formed(name: str) -> None:
    manifest = yaml.safe_load((CLUSTER / "kuberay" / name).read_text())
    assert manifest["apiVersion"] == "ray.io/v1"
    spec = manifest["spec"] if manifest["kind"] == "RayCluster" else manifest["spec"][
        "rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__  # the image runs the Ray the tests run
    for container in _containers(spec):
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"]  # never inline


def test_rayjob_runs_a_sweep_config_that_exists_and_validates() -> None:
    job = yaml.safe_load((CLUSTER / "kuberay" / "rayjob.yaml").read_text())
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "cluster.job_entry"]
    config_path = ROOT / argv[3]
    assert config_path.exists()
    load_config(config_path)
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["RAY_JOB_STOP_SIGNAL"] == "SIGINT"


def test_dockerfile_copies_what_exists() -> None:
    for line in (CLUSTER / "docker" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
