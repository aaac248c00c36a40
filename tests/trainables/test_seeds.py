"""Seeds of either sign reach every RNG a trial seeds, up to the bound the epoch order needs
(`trainables.config.TRAIN_SEED_LIMIT`)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainables.config import TRAIN_SEED_LIMIT, DataConfig, TrainConfig
from trainables.loop import epoch_order
from trainables.runtime import seed_everything


@pytest.mark.parametrize("seed", [-1, -TRAIN_SEED_LIMIT, TRAIN_SEED_LIMIT])
def test_seeds_within_the_bound_reach_every_rng(seed: int) -> None:
    seed_everything(TrainConfig(seed=seed).seed)  # python, numpy (seed % 2**32) and torch
    order = epoch_order(10, seed, epoch=10**9)  # far more epochs than any sweep runs
    assert sorted(order) == list(range(10))
    assert order == epoch_order(10, seed, epoch=10**9)


def test_the_bound_is_where_the_epoch_order_would_overflow() -> None:
    """Just past 2**63 / 100003, torch refuses the epoch order's seed: the bound has room."""
    with pytest.raises((RuntimeError, ValueError)):
        epoch_order(10, -(2**63 // 100_003 + 1), epoch=0)
    with pytest.raises(ValidationError, match="outside -2"):
        TrainConfig(seed=TRAIN_SEED_LIMIT + 1)


def test_a_negative_split_seed_is_a_seed() -> None:
    assert DataConfig(train="t.jsonl", split_seed=-3).split_seed == -3
