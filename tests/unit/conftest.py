"""Shared helpers for the unit tests: a minimal valid config and a way to read its errors.

No test here starts Ray; building Tune domains, searchers and schedulers needs no cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config.errors import ConfigError
from orchestrator.config.loading import load_config
from orchestrator.config.schema import SweepConfig

MakeRaw = Callable[..., dict[str, Any]]


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `patch` into a copy of `base`; `search_space` is replaced, not merged, so a
    test states the whole space it means."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "search_space":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@pytest.fixture
def make_raw(tmp_path: Path) -> MakeRaw:
    """`make_raw(train={"learning_rate": 1e-3})` -> a minimal valid dict config, patched.

    Minimal: causal LM, the model folder is `tmp_path`, one loguniform dimension so the default
    search algorithm (hyperopt) has something to search.
    """
    base: dict[str, Any] = {
        "task": "causal_lm",
        "model": {"path": str(tmp_path)},
        "data": {"train": "train.jsonl"},
        "search_space": {
            "train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
        },
    }

    def make(**patch: Any) -> dict[str, Any]:
        return _merge(base, patch)

    return make


@pytest.fixture
def make_config(make_raw: MakeRaw) -> Callable[..., SweepConfig]:
    """Like `make_raw`, validated through `load_config`."""

    def make(**patch: Any) -> SweepConfig:
        return load_config(make_raw(**patch))

    return make


@pytest.fixture
def config_error() -> Callable[..., ConfigError]:
    """`config_error(source, overrides)` -> the ConfigError `load_config` must raise."""

    def get(source: Any, overrides: list[str] | None = None) -> ConfigError:
        with pytest.raises(ConfigError) as info:
            load_config(source, overrides)
        return info.value

    return get


def assert_mentions(message: str, *fragments: str) -> None:
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message lacks {missing}:\n{message}"


@pytest.fixture
def mentions() -> Callable[..., None]:
    return assert_mentions
