"""Shared fixtures: tiny models built from a config, small data files, a real local Ray, and a
minimal valid config (`make_raw`, `make_config`) with a way to read its errors."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/tiny_models.py

from sweep_helpers import DATES, ROOT, SHARED_DATA, deep_merge, lm_config  # noqa: E402,F401  (re-exported)
from tiny_models import make_tiny_causal_lm, make_tiny_encoder  # noqa: E402

from orchestrator.config.errors import ConfigError  # noqa: E402
from orchestrator.config.loading import load_config  # noqa: E402
from orchestrator.config.schema import SweepConfig  # noqa: E402


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"))


@pytest.fixture(scope="session")
def sentiment_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A 3-class toy classification set whose label is visible in the text."""
    folder = tmp_path_factory.mktemp("sentiment")
    rng = random.Random(0)
    words = {0: ["awful", "bad", "sad"], 1: ["fine", "okay", "plain"],
             2: ["great", "happy", "good"]}
    paths = {}
    for split, n in (("train", 240), ("validation", 48), ("test", 48)):
        path = folder / f"{split}.jsonl"
        with path.open("w") as f:
            for _ in range(n):
                label = rng.randrange(3)
                text = f"it was {rng.choice(words[label])} and {rng.choice(['x', 'y', 'z'])}"
                f.write(json.dumps({"sentence": text, "label": label}) + "\n")
        paths[split] = str(path)
    return paths


@pytest.fixture(scope="module")
def local_ray():
    """A new local Ray for the module (no dashboard), shut down afterwards."""
    import ray

    from orchestrator.run.launch import ensure_ray

    ensure_ray("local")  # never join a cluster that happens to run on this machine
    yield ray
    ray.shutdown()


MakeRaw = Callable[..., dict[str, Any]]




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
        return deep_merge(base, patch)

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
