"""Helpers the tests import by name (conftest modules are not importable unambiguously)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATES = ROOT / "examples" / "data" / "dates"
SHARED_DATA = ROOT.parent / "shared" / "data"


def lm_config(model_dir: Path, **overrides: object) -> dict:
    """A small causal-LM sweep config on the quickstart's date data."""
    config: dict = {
        "task": "causal_lm",
        "model": {"path": str(model_dir)},
        "data": {
            "train": str(DATES / "train.jsonl"),
            "validation": str(DATES / "validation.jsonl"),
            "prompt_template": "Write {date} in words:",
            "completion_template": " {words}",
            "max_length": 64,
            "max_train_examples": 400,
        },
        "train": {"batch_size": 8, "max_steps": 20, "eval_every_steps": 5, "seed": 0},
        "lora": {"r": 4, "alpha": 8, "target_modules": "all-linear"},
        "search_space": {"train.learning_rate": {"type": "loguniform", "low": 1e-4,
                                                 "high": 3e-2}},
        "scheduler": {"grace_period": 5, "reduction_factor": 2},
        "num_samples": 4,
        "baseline": True,
    }
    for key, value in overrides.items():
        config[key] = value
    return config


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `patch` into a copy of `base`; `search_space` is replaced, not merged, so a
    test states the whole space it means."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "search_space":
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# One seeded random trial, no scheduler cut and no baseline: the smallest real sweep.
ONE_TRIAL = {"search": {"algorithm": "random", "seed": 0}, "scheduler": {"type": "fifo"},
             "num_samples": 1, "baseline": False}


def invoke(register: Any, *args: str) -> Any:
    """Run `sweep ARGS` on a group holding only the commands `register` adds."""
    import click
    from click.testing import CliRunner

    group = click.Group("sweep")
    register(group)
    return CliRunner().invoke(group, list(args))
