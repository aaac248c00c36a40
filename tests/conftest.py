"""Shared fixtures: tiny models built from a config, small data files, a real local Ray."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/tiny_models.py

from sweep_helpers import DATES, ROOT, SHARED_DATA, lm_config  # noqa: E402,F401  (re-exported)
from tiny_models import make_tiny_causal_lm, make_tiny_encoder  # noqa: E402


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
