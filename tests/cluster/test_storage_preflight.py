"""Preflight: a storage folder the cluster's nodes cannot write is refused before any trial
starts, naming the nodes. The nodes run in a mount namespace where that folder is read-only,
while this machine (and so the driver) can still write it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_helpers import lm_config

from cluster.local import LocalCluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _read_only_wrapper(folder: Path) -> list[str]:
    script = f'mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && exec "$@"'
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"]


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs mount namespaces (unshare -m, as root)")
def test_unwritable_storage_is_refused_before_trials(tiny_lm_dir: Path, tmp_path: Path) -> None:
    storage = tmp_path / "shared"
    storage.mkdir()
    (storage / "probe").write_text("the driver's machine can write here")
    with LocalCluster(workers=1, cpus_per_node=1,
                      wrapper=_read_only_wrapper(storage)) as cluster:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
               **cluster.env}
        config = lm_config(tiny_lm_dir, name="nowrite", storage_path=str(storage))
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump(config))
        run = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--address",
             cluster.address], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        node_count = len(cluster.node_ids)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stderr.count("cannot write to") == node_count == 2  # each node is named
    assert "Read-only file system" in run.stderr
    assert "mount the folder on every node with write access" in run.stderr
    assert not (storage / "nowrite").exists()  # nothing started, nothing written
