"""Node loss: a worker node of the 2-node loopback cluster is killed mid-trial; its trial
resumes on the surviving node from its checkpoint, and nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from ledger import read_ledger  # noqa: E402
from sweep_helpers import lm_config

from cluster.local import LocalCluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
MAX_STEPS = 200  # ~4 s a trial here: time to see it running and kill its node mid-run


def _node_roles(env: dict[str, str]) -> tuple[str, str]:
    """(head id, worker id), from Ray's node table: the head carries node:__internal_head__."""
    code = ("import json, ray; ray.init(); print(json.dumps([(n['NodeID'], "
            "'node:__internal_head__' in n['Resources']) for n in ray.nodes() if n['Alive']]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.strip().splitlines()[-1]
    nodes = json.loads(out)
    head = next(n for n, is_head in nodes if is_head)
    worker = next(n for n, is_head in nodes if not is_head)
    return head, worker


def _kill_node(node_id: str) -> int:
    """SIGKILL the node's raylet and everything under it (its trial workers): a lost machine."""
    raylet = next(p for p in psutil.process_iter(["cmdline"])
                  if f"--node_id={node_id}" in " ".join(p.info["cmdline"] or []))
    victims = [raylet, *raylet.children(recursive=True)]
    for proc in victims:
        proc.kill()
    return len(victims)


def test_trial_on_a_lost_node_resumes_elsewhere(tiny_lm_dir: Path, tmp_path: Path) -> None:
    with LocalCluster(workers=1, cpus_per_node=1) as cluster:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
               **cluster.env}
        head, worker = _node_roles(env)
        storage = tmp_path / "out"
        config = lm_config(
            tiny_lm_dir, name="node-loss", storage_path=str(storage),
            train={"batch_size": 8, "max_steps": MAX_STEPS, "eval_every_steps": 5, "seed": 0,
                   "learning_rate": 1e-2},
            search_space={"train.weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1}},
            search={"algorithm": "random", "seed": 0, "max_concurrent_trials": 2},
            scheduler={"type": "fifo"}, num_samples=3, max_retries=3, baseline=False,
            keep_top_k_trials=None,
        )
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump(config))
        driver = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--address",
             cluster.address], env=env, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        experiment = storage / "node-loss"
        victim, deadline = None, time.monotonic() + 300
        while victim is None and time.monotonic() < deadline:
            for result_file in experiment.glob("*/result.json"):
                rows = [json.loads(x) for x in result_file.read_text().splitlines()]
                # Still running on the worker: a finished trial's last row also names its
                # node, and with reused trial processes the worker may already be on its next.
                last = rows[-1] if rows else {}
                if (last.get("node_id") == worker and 10 <= last["step"] <= MAX_STEPS // 2
                        and not last.get("done")):
                    victim = last["trial_id"]
            time.sleep(0.3)
        assert victim, "no trial reached step 10 on the worker node"
        assert _kill_node(worker) >= 2
        out, _ = driver.communicate(timeout=600)
        assert driver.returncode == 0, out[-3000:]

    ledger = read_ledger(experiment)
    assert len(ledger) == 3 and len({r.key for r in ledger.values()}) == 3
    assert all(r.steps[-1] == MAX_STEPS for r in ledger.values())
    lost = ledger[victim]
    assert lost.restored_at and min(lost.restored_at) > 5  # from its checkpoint, not scratch
    trial_dir = next(p for p in experiment.iterdir() if p.is_dir() and victim in p.name)
    last = json.loads((trial_dir / "result.json").read_text().splitlines()[-1])
    assert last["node_id"] == head  # finished on the surviving node

    from orchestrator import load_results

    result = load_results(experiment)
    assert (result.trials["status"] == "TERMINATED").all()
    assert result.best_value == min(v for r in ledger.values() for v in r.values)
