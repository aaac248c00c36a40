"""Causal-LM fine-tuning trial: SFT on prompt/completion pairs (loss on the completion only) or
plain next-token training on text. Reports eval_loss, eval_perplexity, eval_token_accuracy."""

from __future__ import annotations

from typing import Any

from trainables.config import TrialSpec
from trainables.data import PreparedData
from trainables.tune_entry import run_trial


def train_causal_lm(config: dict[str, Any], *, spec: TrialSpec, data: PreparedData,
                    pad_id: int) -> None:
    """Ray Tune function trainable; `config` holds the searched values only."""
    run_trial(config, spec=spec, data=data, pad_id=pad_id)
