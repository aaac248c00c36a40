"""Shared fixtures: tiny models built from a config, small data files, a real local Ray."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/tiny_models.py

from tiny_models import make_tiny_causal_lm, make_tiny_encoder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATES = ROOT / "examples" / "data" / "dates"
SHARED_DATA = ROOT.parent / "shared" / "data"


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


@pytest.fixture(scope="module")
def local_ray():
    """A new local Ray for the module (no dashboard), shut down afterwards."""
    import ray

    from orchestrator.launch import ensure_ray

    ensure_ray("local")  # never join a cluster that happens to run on this machine
    yield ray
    ray.shutdown()
