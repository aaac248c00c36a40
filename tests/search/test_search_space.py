"""The config's search space becomes Tune domains; the search algorithm is picked by name."""

from __future__ import annotations

import pytest
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.sample import Categorical, Float, Integer, Quantized

from orchestrator.search.searchers import build_search_alg, default_initial_points
from orchestrator.search.space import grid_size, to_param_space, to_pbt_mutations

FULL_SPACE = {
    "train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-3},
    "train.batch_size": {"type": "randint", "low": 2, "high": 8},
    "train.warmup_ratio": {"type": "quniform", "low": 0.0, "high": 0.2, "q": 0.05},
    "lora.dropout": {"type": "uniform", "low": 0.0, "high": 0.2},
    "lora.r": {"type": "choice", "values": [4, 8, 16]},
    "lora.alpha": {"type": "grid", "values": [16, 32]},
}


def _sampler_name(domain) -> str:
    return type(domain.get_sampler()).__name__


@pytest.fixture
def full_config(make_config):
    return make_config(search={"algorithm": "random"}, search_space=FULL_SPACE)


def test_param_space_is_nested_by_section(full_config):
    space = to_param_space(full_config)

    assert set(space) == {"train", "lora"}
    assert set(space["train"]) == {"learning_rate", "batch_size", "warmup_ratio"}
    assert set(space["lora"]) == {"dropout", "r", "alpha"}


def test_loguniform_keeps_its_bounds(full_config):
    domain = to_param_space(full_config)["train"]["learning_rate"]

    assert isinstance(domain, Float)
    assert (domain.lower, domain.upper) == (1e-5, 1e-3)
    assert _sampler_name(domain) == "_LogUniform"


def test_uniform_keeps_its_bounds(full_config):
    domain = to_param_space(full_config)["lora"]["dropout"]

    assert isinstance(domain, Float)
    assert (domain.lower, domain.upper) == (0.0, 0.2)
    assert _sampler_name(domain) == "_Uniform"


def test_randint_inclusive_high_becomes_tunes_exclusive_bound(full_config):
    domain = to_param_space(full_config)["train"]["batch_size"]

    assert isinstance(domain, Integer)
    assert (domain.lower, domain.upper) == (2, 9)  # config high 8 is inclusive
    values = {domain.sample() for _ in range(200)}
    assert max(values) == 8 and min(values) == 2


def test_quniform_keeps_q(full_config):
    domain = to_param_space(full_config)["train"]["warmup_ratio"]

    assert isinstance(domain, Float)
    assert (domain.lower, domain.upper) == (0.0, 0.2)
    sampler = domain.get_sampler()
    assert isinstance(sampler, Quantized)
    assert sampler.q == 0.05


def test_choice_becomes_categorical(full_config):
    domain = to_param_space(full_config)["lora"]["r"]

    assert isinstance(domain, Categorical)
    assert domain.categories == [4, 8, 16]


def test_grid_becomes_grid_search(full_config):
    assert to_param_space(full_config)["lora"]["alpha"] == {"grid_search": [16, 32]}


def test_grid_algorithm_enumerates_choices(make_config):
    config = make_config(
        search={"algorithm": "grid"},
        search_space={
            "lora.r": {"type": "choice", "values": [4, 8, 16]},
            "lora.alpha": {"type": "grid", "values": [16, 32]},
        },
    )

    space = to_param_space(config)

    assert space == {"lora": {"r": {"grid_search": [4, 8, 16]}, "alpha": {"grid_search": [16, 32]}}}
    assert grid_size(config) == 6


def test_grid_size_counts_only_grid_dimensions_outside_grid_search(full_config):
    assert grid_size(full_config) == 2  # lora.alpha; the choice is sampled, not enumerated


def test_grid_size_without_grid_is_one(make_config):
    assert grid_size(make_config()) == 1


def test_empty_search_space_gives_empty_param_space(make_config):
    config = make_config(search={"algorithm": "random"}, search_space={})

    assert to_param_space(config) == {}


def test_pbt_mutations_resample_grid_values_as_a_choice(full_config):
    mutations = to_pbt_mutations(full_config)

    alpha = mutations["lora"]["alpha"]
    assert isinstance(alpha, Categorical) and alpha.categories == [16, 32]
    lr = mutations["train"]["learning_rate"]
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-5, 1e-3)
    assert mutations["train"]["batch_size"].upper == 9
    assert set(mutations["train"]) == {"learning_rate", "batch_size", "warmup_ratio"}


# --- search algorithms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_samples", "initial"),
    [(1, 2), (4, 2), (8, 2), (9, 3), (16, 4), (32, 8), (80, 20), (81, 20), (200, 20)],
)
def test_default_initial_points_is_a_quarter_between_2_and_20(num_samples, initial):
    assert default_initial_points(num_samples) == initial


def test_hyperopt_initial_points_come_from_the_sweep_size(make_config):
    from ray.tune.search.hyperopt import HyperOptSearch

    alg = build_search_alg(make_config(num_samples=32))

    assert isinstance(alg, HyperOptSearch)
    assert alg.algo.keywords["n_startup_jobs"] == 8


def test_hyperopt_explicit_initial_points_win(make_config):
    alg = build_search_alg(make_config(num_samples=32, search={"n_initial_points": 5}))

    assert alg.algo.keywords["n_startup_jobs"] == 5


def test_optuna_uses_seeded_tpe_with_initial_points(make_config):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    alg = build_search_alg(make_config(num_samples=200, search={"algorithm": "optuna"}))

    assert isinstance(alg, OptunaSearch)
    assert isinstance(alg._sampler, optuna.samplers.TPESampler)
    assert alg._sampler._n_startup_trials == 20


@pytest.mark.parametrize("algorithm", ["random", "grid"])
def test_random_and_grid_use_basic_variant_generator(make_config, algorithm):
    config = make_config(
        search={"algorithm": algorithm},
        search_space={"lora.r": {"type": "grid", "values": [4, 8]}},
    )

    alg = build_search_alg(config)

    assert isinstance(alg, BasicVariantGenerator)
    assert alg.max_concurrent == 0  # no limit


def test_basic_variant_generator_limits_concurrency_itself(make_config):
    alg = build_search_alg(make_config(search={"algorithm": "random", "max_concurrent_trials": 3}))

    assert isinstance(alg, BasicVariantGenerator)
    assert alg.max_concurrent == 3


@pytest.mark.parametrize("algorithm", ["hyperopt", "optuna"])
def test_max_concurrent_trials_wraps_in_concurrency_limiter(make_config, algorithm):
    from ray.tune.search.hyperopt import HyperOptSearch
    from ray.tune.search.optuna import OptunaSearch

    config = make_config(search={"algorithm": algorithm, "max_concurrent_trials": 2})

    alg = build_search_alg(config)

    assert isinstance(alg, ConcurrencyLimiter)
    assert alg.max_concurrent == 2
    inner = {"hyperopt": HyperOptSearch, "optuna": OptunaSearch}[algorithm]
    assert isinstance(alg.searcher, inner)


def test_no_concurrency_limiter_without_max_concurrent_trials(make_config):
    assert not isinstance(build_search_alg(make_config()), ConcurrencyLimiter)
