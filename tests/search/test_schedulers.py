"""`build_scheduler` turns the config into Ray schedulers with the right budget units.

Asserts read the schedulers' private attributes (Ray 2.x: `ray/tune/schedulers/*.py`).
"""

from __future__ import annotations

import pytest
from ray.tune import schedulers
from ray.tune.search.sample import Float

from orchestrator.search.schedulers import build_scheduler

MAX_STEPS = 160
TOKENS_PER_STEP = 1000.0


def _rungs(asha: schedulers.ASHAScheduler, bracket: int = 0) -> list[float]:
    return sorted(milestone for milestone, _ in asha._brackets[bracket]._rungs)


def test_asha_counts_steps_with_configured_budgets(make_config):
    config = make_config(
        train={"eval_every_steps": 10},
        scheduler={"type": "asha", "grace_period": 20, "reduction_factor": 2},
    )

    asha = build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)

    assert type(asha) is schedulers.ASHAScheduler
    assert asha._time_attr == "step"
    assert asha._max_t == MAX_STEPS
    assert asha._reduction_factor == 2
    assert len(asha._brackets) == 1
    rungs = _rungs(asha)
    assert rungs[0] == 20  # the first rung is the grace period
    assert all(b == a * 2 for a, b in zip(rungs, rungs[1:], strict=False))
    assert rungs[-1] <= MAX_STEPS


def test_asha_grace_period_defaults_to_two_evaluations(make_config):
    config = make_config(train={"eval_every_steps": 25})

    asha = build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)

    assert _rungs(asha)[0] == 50
    assert asha._reduction_factor == 3.0  # the default


def test_asha_explicit_max_t_wins_over_the_train_budget(make_config):
    config = make_config(train={"eval_every_steps": 10}, scheduler={"max_t": 90})

    assert build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)._max_t == 90


def test_asha_default_grace_period_is_clamped_to_max_t(make_config):
    # An explicit grace_period above max_t is refused at load (tests/config); the default, two
    # evaluations (20 steps here), may still exceed a small max_t.
    config = make_config(train={"eval_every_steps": 10}, scheduler={"max_t": 15})

    asha = build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)

    assert asha._max_t == 15
    assert _rungs(asha)[0] == 15


def test_asha_max_t_never_below_grace_period(make_config):
    config = make_config(train={"eval_every_steps": 10}, scheduler={"grace_period": 40})

    asha = build_scheduler(config, max_steps=15, tokens_per_step=TOKENS_PER_STEP)

    assert asha._max_t == 40


def test_asha_brackets(make_config):
    config = make_config(
        train={"eval_every_steps": 10},
        scheduler={"grace_period": 10, "reduction_factor": 2, "brackets": 2},
    )

    asha = build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)

    assert len(asha._brackets) == 2
    assert _rungs(asha, 1)[0] == 20  # bracket s starts at grace * rf**s


def test_asha_in_tokens_converts_step_budgets(make_config):
    config = make_config(train={"eval_every_steps": 10}, scheduler={"time_unit": "tokens"})

    asha = build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)

    assert asha._time_attr == "tokens_seen"
    assert asha._max_t == MAX_STEPS * TOKENS_PER_STEP
    assert _rungs(asha)[0] == 2 * 10 * TOKENS_PER_STEP


def test_asha_in_tokens_keeps_explicit_token_budgets(make_config):
    # 5000 tokens is below eval_every_steps (10) as a number; in tokens mode that is fine.
    config = make_config(
        train={"eval_every_steps": 10},
        scheduler={"time_unit": "tokens", "grace_period": 5000, "max_t": 50000},
    )

    asha = build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)

    assert asha._max_t == 50000
    assert _rungs(asha)[0] == 5000


@pytest.mark.parametrize(("time_unit", "attr"), [("steps", "step"), ("tokens", "tokens_seen")])
def test_hyperband(make_config, time_unit, attr):
    config = make_config(
        train={"eval_every_steps": 10},
        scheduler={"type": "hyperband", "time_unit": time_unit, "reduction_factor": 4},
    )

    hyperband = build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)

    assert type(hyperband) is schedulers.HyperBandScheduler
    assert hyperband._time_attr == attr
    per_step = 1 if time_unit == "steps" else TOKENS_PER_STEP
    assert hyperband._max_t_attr == MAX_STEPS * per_step
    assert hyperband._eta == 4


def test_median_stopping(make_config):
    config = make_config(
        train={"eval_every_steps": 10},
        scheduler={"type": "median", "grace_period": 30, "min_samples_required": 5},
    )

    median = build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)

    assert type(median) is schedulers.MedianStoppingRule
    assert median._time_attr == "step"
    assert median._grace_period == 30
    assert median._min_samples_required == 5


def test_median_default_grace_is_two_evaluations(make_config):
    config = make_config(train={"eval_every_steps": 10}, scheduler={"type": "median"})

    assert build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)._grace_period == 20


def _pbt_config(make_config, **scheduler):
    return make_config(
        train={"eval_every_steps": 10},
        search={"algorithm": "random"},
        search_space={
            "train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
            "lora.dropout": {"type": "grid", "values": [0.0, 0.1]},
        },
        scheduler={"type": "pbt", **scheduler},
    )


def test_pbt_mutations_come_from_the_search_space(make_config):
    pbt = build_scheduler(_pbt_config(make_config), MAX_STEPS, TOKENS_PER_STEP)

    assert type(pbt) is schedulers.PopulationBasedTraining
    assert pbt._time_attr == "step"
    mutations = pbt._hyperparam_mutations
    assert set(mutations) == {"train", "lora"}
    lr = mutations["train"]["learning_rate"]
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-5, 1e-3)
    assert mutations["lora"]["dropout"].categories == [0.0, 0.1]
    assert pbt._synch is False
    assert pbt._perturbation_interval == 20  # default: two evaluations
    assert pbt._quantile_fraction == 0.25
    assert pbt._resample_probability == 0.25


def test_pbt_configured_knobs(make_config):
    config = _pbt_config(
        make_config, perturbation_interval=30, quantile_fraction=0.5, resample_probability=0.0
    )

    pbt = build_scheduler(config, MAX_STEPS, TOKENS_PER_STEP)

    assert pbt._perturbation_interval == 30
    assert pbt._quantile_fraction == 0.5
    assert pbt._resample_probability == 0.0


def test_fifo(make_config):
    fifo = build_scheduler(make_config(scheduler={"type": "fifo"}), MAX_STEPS, TOKENS_PER_STEP)

    assert type(fifo) is schedulers.FIFOScheduler
