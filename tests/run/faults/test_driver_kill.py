"""Driver loss: SIGKILL the driver (and its local Ray) mid-sweep, then `sweep resume`.

The sweep runs one trial at a time with a seeded searcher, so an uninterrupted run is exactly
reproducible; the resumed run must end with the same trials, the same stop/continue decisions
and no finished trial re-run. Two variants, each failing if its state were lost:
- grid, good learning rates first: the later, bad trials are stopped at the first rung only if
  ASHA's rung records from before the kill survive;
- hyperopt: the configs suggested after the resume match only if TPE's history survives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ledger import read_ledger
from sweep_helpers import lm_config

pytestmark = pytest.mark.integration


VARIANTS = {
    "asha-rungs": {
        "search_space": {"train.learning_rate": {
            "type": "grid", "values": [3e-2, 1e-2, 1e-5, 2e-5, 3e-5]}},
        "search": {"algorithm": "grid", "max_concurrent_trials": 1},
        "num_samples": 1,
    },
    "tpe-history": {
        "search_space": {"train.learning_rate": {
            "type": "loguniform", "low": 1e-5, "high": 3e-2}},
        "search": {"algorithm": "hyperopt", "seed": 3, "max_concurrent_trials": 1,
                   "n_initial_points": 2},
        "num_samples": 5,
    },
}


def _config(tiny_lm_dir: Path, storage: Path, name: str, variant: str) -> dict:
    return lm_config(
        tiny_lm_dir, name=name, storage_path=str(storage),
        train={"batch_size": 8, "max_steps": 15, "eval_every_steps": 5, "seed": 0},
        scheduler={"type": "asha", "grace_period": 5, "reduction_factor": 2},
        baseline=False, keep_checkpoints_per_trial=2, keep_top_k_trials=None,
        **VARIANTS[variant],
    )


def _sweep(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **kwargs)


def _run_and_kill(config: Path, experiment: Path, reported: int) -> None:
    """`sweep run config`, SIGKILLed with its local Ray once `reported` trials have reported
    and an experiment snapshot exists (waits on files, up to 300 s, never on a fixed time)."""
    cut = _sweep("run", str(config), "--address", "local", start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if len(list(experiment.glob("*/result.json"))) >= reported and list(
            experiment.glob("experiment_state-*.json")
        ):
            break
        if cut.poll() is not None:
            pytest.fail(f"the sweep ended before {reported} trials reported: "
                        f"{cut.communicate()[0][-3000:]}")
        time.sleep(0.5)
    else:
        cut.kill()
        pytest.fail(f"the sweep never got {reported} trials in")
    os.killpg(cut.pid, signal.SIGKILL)  # the driver and the local Ray it started
    cut.wait(timeout=30)


def _decisions(experiment: Path) -> list[tuple[str, list[int]]]:
    ledger = read_ledger(experiment)
    return sorted((r.key, sorted(set(r.steps))) for r in ledger.values())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_resume_after_driver_sigkill_matches_uninterrupted_run(
    tiny_lm_dir: Path, tmp_path: Path, variant: str
) -> None:
    storage = tmp_path / "out"
    ref_yaml, cut_yaml = tmp_path / "ref.yaml", tmp_path / "cut.yaml"
    ref_yaml.write_text(yaml.safe_dump(_config(tiny_lm_dir, storage, "reference", variant)))
    cut_yaml.write_text(yaml.safe_dump(_config(tiny_lm_dir, storage, "interrupted", variant)))

    ref = _sweep("run", str(ref_yaml), "--address", "local")
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out[-3000:]

    experiment = storage / "interrupted"
    _run_and_kill(cut_yaml, experiment, reported=3)
    before = read_ledger(experiment)
    finished_before = {tid: r for tid, r in before.items() if r.steps and (
        r.steps[-1] == 15)}

    resumed = _sweep("resume", str(experiment), "--address", "local")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]

    after = read_ledger(experiment)
    assert len(after) == 5 and len({r.key for r in after.values()}) == 5  # no duplicates
    for tid, record in finished_before.items():  # finished trials were not re-run
        assert after[tid].steps == record.steps
        assert after[tid].checkpoints.items() >= {
            k: v for k, v in record.checkpoints.items()}.items()
    for tid, record in before.items():  # running trials continued from their checkpoints
        if record.steps and tid not in finished_before:
            assert after[tid].steps[: len(record.steps)] == record.steps
    # The same trials with the same stop/continue decisions as the uninterrupted run.
    assert _decisions(experiment) == _decisions(storage / "reference")

    from orchestrator import load_results

    result, reference = load_results(experiment), load_results(storage / "reference")
    assert result.best_value == pytest.approx(reference.best_value, rel=1e-6)
    best_in_ledger = min(v for r in after.values() for v in r.values)
    assert result.best_value == best_in_ledger


def test_a_moved_experiment_resumes_whole_in_its_new_folder(tiny_lm_dir: Path,
                                                             tmp_path: Path) -> None:
    """Killed, moved to another folder, resumed there: the trials the searcher creates after
    the resume live in the new folder too (Ray Tune alone would write them into the old one,
    orchestrator/run/ray_compat.py), so the experiment is whole where it now is."""
    storage, config = tmp_path / "out", tmp_path / "cut.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_lm_dir, storage, "interrupted",
                                             "tpe-history")))
    first = storage / "interrupted"
    _run_and_kill(config, first, reported=1)
    before = read_ledger(first)
    moved = tmp_path / "elsewhere" / "interrupted"
    moved.parent.mkdir()
    first.rename(moved)

    resumed = _sweep("resume", str(moved), "--address", "local")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out[-3000:]

    assert not first.exists(), sorted(p.name for p in first.rglob("*"))[:20]
    after = read_ledger(moved)
    assert len(after) == 5 and len({r.key for r in after.values()}) == 5
    created_after = set(after) - set(before)
    assert len(created_after) >= 2, (sorted(before), sorted(after))
    for tid in created_after:
        assert after[tid].steps, tid  # reported into the new folder
    from orchestrator import load_results

    result = load_results(moved)
    assert len(result.trials) == 5
    assert set(result.trials["status"]) == {"TERMINATED"}, result.trials[["trial_id", "status"]]
    assert result.best_checkpoint is not None
    assert Path(result.best_checkpoint).resolve().is_relative_to(moved.resolve())
