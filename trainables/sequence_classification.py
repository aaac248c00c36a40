"""Sequence-classification fine-tuning trial (LoRA trains the adapter and the new head).
Reports eval_loss, eval_accuracy and macro eval_f1."""

from __future__ import annotations

from typing import Any

from trainables.config import TrialSpec
from trainables.data import PreparedData
from trainables.tune_entry import run_trial


def train_sequence_classification(config: dict[str, Any], *, spec: TrialSpec,
                                  data: PreparedData, pad_id: int) -> None:
    """Ray Tune function trainable; `config` holds the searched values only."""
    run_trial(config, spec=spec, data=data, pad_id=pad_id)
