"""Chaos soak: a sweep of many short trials on the 2-node loopback cluster while trial processes,
a worker node and the driver are killed at random; then check that nothing was lost.

    python scripts/chaos_soak.py                  # 50 trials, seed 0 (about 10 minutes here)
    python scripts/chaos_soak.py --trials 60 --seed 3

Faults: SIGKILL of random trial processes throughout; SIGKILL of the worker node (its raylet
and everything under it) once; SIGKILL of the driver once, followed by `sweep resume`.
Checks, from an independent ledger of Tune's raw result files: every trial exactly once, every
trial finished (run to its budget or stopped by ASHA), every finished trial's best checkpoint
present and loadable, and the reported best equal to the ledger's best. Prints the counts.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from ledger import read_ledger  # noqa: E402
from sweep_helpers import lm_config  # noqa: E402
from tiny_models import make_tiny_causal_lm  # noqa: E402

from cluster.local import LocalCluster  # noqa: E402


def _trial_processes(holder_pid: int) -> list[psutil.Process]:
    """Trial processes of this cluster only (descendants of its holder), never another Ray's."""
    try:
        tree = psutil.Process(holder_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for proc in tree:
        try:
            if "ray::ImplicitFunc" in " ".join(proc.cmdline() or []):
                found.append(proc)
        except psutil.Error:  # exited (or a zombie) since the listing
            continue
    return found


def _worker_node_raylet(cluster: LocalCluster, env: dict[str, str]) -> psutil.Process | None:
    code = ("import json, ray; ray.init(); print(json.dumps([n['NodeID'] for n in ray.nodes() "
            "if n['Alive'] and 'node:__internal_head__' not in n['Resources']]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120).stdout.strip().splitlines()
    ids = json.loads(out[-1]) if out else []
    for proc in psutil.process_iter(["cmdline"]):
        if ids and f"--node_id={ids[0]}" in " ".join(proc.info["cmdline"] or []):
            return proc
    return None


def _finished(experiment: Path) -> int:
    return sum(1 for f in experiment.glob("*/result.json")
               if '"done": true' in f.read_text())


@click.command()
@click.option("--trials", default=50, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(trials: int, seed: int) -> None:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="chaos-soak-"))
    model = make_tiny_causal_lm(work / "model")
    config = lm_config(
        model, name="soak", storage_path=str(work / "out"), num_samples=trials,
        train={"batch_size": 8, "max_steps": 15, "eval_every_steps": 5, "seed": 0},
        search_space={"train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 3e-2},
                      "lora.r": {"type": "choice", "values": [2, 4]}},
        search={"algorithm": "hyperopt", "seed": seed, "max_concurrent_trials": 2},
        scheduler={"type": "asha", "grace_period": 5, "reduction_factor": 2},
        max_retries=5, baseline=False, keep_top_k_trials=None,
    )
    (work / "soak.yaml").write_text(yaml.safe_dump(config))
    experiment = work / "out" / "soak"
    counts = {"trial_kills": 0, "node_kills": 0, "driver_kills": 0}
    started = time.monotonic()
    with LocalCluster(workers=1, cpus_per_node=1) as cluster:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
               **cluster.env}
        worker_raylet = _worker_node_raylet(cluster, env)

        def sweep(*args: str) -> subprocess.Popen:
            return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args],
                                    env=env, cwd=ROOT, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        driver = sweep("run", str(work / "soak.yaml"), "--address", cluster.address)
        stop = threading.Event()

        def kill_trials() -> None:
            while not stop.wait(rng.uniform(4, 9)):
                victims = _trial_processes(cluster.holder_pid)
                if victims:
                    try:
                        rng.choice(victims).kill()
                        counts["trial_kills"] += 1
                    except psutil.Error:
                        continue

        killer = threading.Thread(target=kill_trials, daemon=True)
        killer.start()
        node_at, driver_at = round(trials * 0.25), round(trials * 0.5)
        while driver.poll() is None:
            done = _finished(experiment)
            if counts["node_kills"] == 0 and done >= node_at and worker_raylet is not None:
                for proc in [worker_raylet, *worker_raylet.children(recursive=True)]:
                    proc.kill()
                counts["node_kills"] += 1
            if counts["driver_kills"] == 0 and done >= driver_at:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
                counts["driver_kills"] += 1
                driver = sweep("resume", str(experiment), "--address", cluster.address)
            time.sleep(1)
        stop.set()
        killer.join()
        rc = driver.returncode
    wall = time.monotonic() - started

    from orchestrator import load_results
    from orchestrator.experiment.checkpoints import load_checkpoint_model

    ledger = read_ledger(experiment)
    result = load_results(experiment)
    problems = []
    if rc != 0:
        problems.append(f"the last driver exited with {rc}")
    if len(ledger) != trials or len({r.key for r in ledger.values()}) != trials:
        problems.append(f"{len(ledger)} trials in the ledger ({trials} expected, no duplicates)")
    unfinished = result.trials[result.trials["status"] != "TERMINATED"]
    if len(unfinished):
        problems.append(f"{len(unfinished)} trials not finished: {list(unfinished['trial_id'])}")
    loaded = 0
    for trial_id, record in ledger.items():
        if not record.checkpoints:
            problems.append(f"{trial_id}: no checkpoint")
            continue
        trial_dir = next(p for p in experiment.iterdir() if p.is_dir() and trial_id in p.name)
        best = min(trial_dir.glob("checkpoint_*"), key=lambda c: json.loads(
            (c / "metrics.json").read_text())["eval_loss"])
        assert result.config is not None
        load_checkpoint_model(result.config, best)
        loaded += 1
    ledger_best = min(v for r in ledger.values() for v in r.values)
    if result.best_value != ledger_best:
        problems.append(f"reported best {result.best_value} != ledger best {ledger_best}")
    restores = sum(len(r.restored_at) for r in ledger.values())
    summary = {
        "trials": len(ledger), "expected_trials": trials, **counts,
        "restores_from_checkpoint": restores, "checkpoints_loaded": loaded,
        "stopped_early_by_asha": int(result.trials["stopped_early"].sum()),
        "best_eval_loss": result.best_value, "wall_s": round(wall), "problems": problems,
        "seed": seed, "experiment": str(experiment),
    }
    print(json.dumps(summary, indent=2))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
