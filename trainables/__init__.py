"""Code that runs inside a trial. Never imports `orchestrator`."""

from trainables.causal_lm import train_causal_lm
from trainables.sequence_classification import train_sequence_classification

TRAINABLES = {
    "causal_lm": train_causal_lm,
    "sequence_classification": train_sequence_classification,
}

__all__ = ["TRAINABLES", "train_causal_lm", "train_sequence_classification"]
