"""Checkpoints on S3-compatible object storage: a real moto S3 server on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from s3_helpers import SECRET, moto_s3
from sweep_helpers import lm_config

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server; credentials only in the environment (set before Ray starts, so every
    Ray worker inherits them as they would on a real node)."""
    pytest.importorskip("boto3")
    with moto_s3() as server:
        yield server


def test_credentials_in_uri_are_refused(tiny_lm_dir: Path) -> None:
    from orchestrator import ConfigError
    from orchestrator.config.loading import load_config
    from orchestrator.run.launch import prepare_storage

    cfg = load_config(lm_config(tiny_lm_dir, name="x",
                                storage_path="s3://b/p?access_key=AKIA&secret_key=s"))
    with pytest.raises(ConfigError, match="carries credentials"):
        prepare_storage(cfg, nodes=[])


def test_sweep_checkpoints_to_s3(s3_server, local_ray, tiny_lm_dir: Path, tmp_path: Path) -> None:
    from orchestrator import launch, load_results

    uri = f"s3://sweeps/team?region=us-east-1&endpoint_override={s3_server['endpoint']}"
    result = launch(lm_config(tiny_lm_dir, name="on-s3", storage_path=uri, num_samples=2),
                    live=False)
    assert result.experiment_path.startswith("s3://sweeps/team/on-s3")
    assert result.best_checkpoint.startswith("s3://sweeps/team/on-s3/")

    # What is in the bucket, listed independently of pyarrow and Ray.
    client = s3_server["client"]
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket="sweeps", Prefix="team/on-s3/") for o in page.get("Contents", [])]
    assert "team/on-s3/sweep_config.yaml" in keys and "team/on-s3/baseline.json" in keys
    adapters = [k for k in keys if k.endswith("adapter/adapter_model.safetensors")]
    assert len(adapters) >= 2  # both trials checkpointed to the bucket
    for key in keys:
        if not key.endswith(".safetensors"):  # every small file, binary ones too
            body = client.get_object(Bucket="sweeps", Key=key)["Body"].read()
            assert SECRET.encode() not in body, f"credentials leaked into {key}"

    again = load_results(result.experiment_path)
    assert again.best_trial_id == result.best_trial_id
    local = result.local_checkpoint(str(tmp_path / "best"))
    assert (local / "adapter" / "adapter_model.safetensors").exists()
    model, _ = result.load_best_model()
    assert type(model).__name__.startswith("PeftModel")


def test_storage_outage_does_not_kill_the_sweep(s3_server, local_ray, tiny_lm_dir: Path) -> None:
    """The S3 server stops answering for ~20 s mid-sweep (SIGSTOP, so connections hang as on a
    network partition); the sweep finishes, the best trial's checkpoints are in the bucket, and
    the checkpoint janitor (on: keep the top 1) neither crashes nor loses track: the other
    trial's checkpoints are deleted once the store answers again, and only then."""
    import signal
    import threading

    from orchestrator import launch

    uri = f"s3://sweeps/outage?region=us-east-1&endpoint_override={s3_server['endpoint']}"
    client = s3_server["client"]
    window: list[float] = []

    def outage() -> None:
        # Wait for the first checkpoint to land, then freeze the server for 20 s.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            listed = client.list_objects_v2(Bucket="sweeps", Prefix="outage/o/")
            if any("checkpoint_" in o["Key"] for o in listed.get("Contents", [])):
                break
            time.sleep(0.2)
        s3_server["process"].send_signal(signal.SIGSTOP)
        window.append(time.time())
        time.sleep(20)
        s3_server["process"].send_signal(signal.SIGCONT)
        window.append(time.time())

    chaos = threading.Thread(target=outage)
    chaos.start()
    try:
        result = launch(lm_config(tiny_lm_dir, name="o", storage_path=uri, num_samples=2,
                                  baseline=False, keep_top_k_trials=1,
                                  scheduler={"type": "fifo"},
                                  train={"batch_size": 8, "max_steps": 40,
                                         "eval_every_steps": 5, "seed": 0}),
                        live=False)
        finished = time.time()
    finally:
        chaos.join()
    # The outage began after the first checkpoint and ended before the sweep did.
    assert len(window) == 2 and finished > window[1]
    assert (result.trials["status"] == "TERMINATED").all(), result.trials
    assert (result.trials["last_step"] == 40).all()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket="sweeps", Prefix="outage/o/") for o in page.get("Contents", [])]
    for trial_id in result.trials["trial_id"]:
        manifests = [k for k in keys if trial_id in k and k.endswith("manifest.json")]
        if trial_id == result.best_trial_id:
            assert manifests, f"the best trial {trial_id} has no checkpoint in the bucket"
        else:  # outside the top 1: deleted, the outage notwithstanding
            assert manifests == [], f"trial {trial_id} kept {manifests}"
        # Every trial's reports are still there (only checkpoints are pruned).
        assert any(trial_id in k and k.endswith("result.json") for k in keys)
    model, _ = result.load_best_model()
    assert model is not None
