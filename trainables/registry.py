"""The trainable of each task, by name. Values are `module:function` paths imported on first
use, so reading the registry (or `trainables.config`) does not import torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

TRAINABLES: dict[str, Callable[..., Any] | str] = {
    "causal_lm": "trainables.causal_lm:train_causal_lm",
    "sequence_classification": "trainables.sequence_classification:train_sequence_classification",
}


def get_trainable(task: str) -> Callable[..., Any]:
    """The trainable function for `task` (a test may put a function in `TRAINABLES` directly)."""
    entry = TRAINABLES[task]
    if isinstance(entry, str):
        module, _, name = entry.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    return entry
