"""An independent ledger of a sweep: read from Tune's raw files, not the orchestrator's code."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrialRecord:
    trial_id: str
    config: dict
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    checkpoints: dict[str, str] = field(default_factory=dict)  # name -> digest of adapter
    # The first step reported after each restore from a checkpoint (Tune rewrites its logs on
    # restore, so this is how a resume shows: a restore at step S reports S + eval_every).
    restored_at: list[int] = field(default_factory=list)

    @property
    def key(self) -> str:
        """What identifies a trial across two runs of the same seeded sweep: its config."""
        return json.dumps(self.config, sort_keys=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def read_ledger(experiment: Path, metric: str = "eval_loss") -> dict[str, TrialRecord]:
    ledger: dict[str, TrialRecord] = {}
    for trial_dir in sorted(p for p in experiment.iterdir() if (p / "params.json").exists()):
        rows = [json.loads(line) for line in
                (trial_dir / "result.json").read_text().splitlines()] if (
            trial_dir / "result.json").exists() else []
        trial_id = rows[0]["trial_id"] if rows else trial_dir.name
        record = TrialRecord(trial_id, json.loads((trial_dir / "params.json").read_text()))
        record.steps = [r["step"] for r in rows if "step" in r]
        record.values = [r[metric] for r in rows]
        record.restored_at = [r["step"] for r in rows if "step" in r and r.get(
            "iterations_since_restore") == 1 and r.get("training_iteration", 1) > 1]
        for ckpt in sorted(trial_dir.glob("checkpoint_*")):
            adapter = ckpt / "adapter" / "adapter_model.safetensors"
            if adapter.exists():
                record.checkpoints[ckpt.name] = _digest(adapter)
        ledger[trial_id] = record
    return ledger
