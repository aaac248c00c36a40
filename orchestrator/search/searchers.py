"""Search algorithms by name. Heavy imports are lazy; an unknown name lists the valid ones.

hyperopt and optuna model the results with TPE; cmaes and nsga2 are optuna's evolutionary
samplers, run through Tune's `OptunaSearch` like optuna's TPE:

- cmaes: `CmaEsSampler` (CMA-ES, Hansen 2016) over the numeric dimensions; CMA-ES with margin
  (Hamano et al. 2022) when some are integer or quantized, so their values do not freeze once
  the step size drops below one grid step. Choice dimensions are not modelled: optuna samples
  them with its independent (random) sampler.
- nsga2: `NSGAIISampler` (Deb et al. 2002). With one metric its non-dominated sort is a ranking,
  so it is an elitist genetic algorithm: the best `population_size` trials so far are the
  parents, children mix their values (uniform crossover, choices included) and mutate.

Both count generations of `population_size` finished trials; a trial stopped early by ASHA
counts with the metric it reached (as for TPE).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from typing import Any

from orchestrator.config.errors import MissingDependencyError
from orchestrator.config.schema import (
    Choice,
    Grid,
    QUniform,
    RandInt,
    SweepConfig,
    nsga2_population_size,
)


def default_initial_points(num_samples: int) -> int:
    """Random start-up trials before TPE models the results.

    hyperopt's default (20) would make a 16-trial sweep pure random search. A quarter of the
    budget (at least 2, at most 20) leaves most trials to the model.
    """
    return max(2, min(20, math.ceil(num_samples / 4)))


def nested_points(config: SweepConfig) -> list[dict[str, dict[str, Any]]]:
    """`{"train.learning_rate": v}` -> `{"train": {"learning_rate": v}}` (the param space)."""
    points: list[dict[str, dict[str, Any]]] = []
    for point in config.search.points_to_evaluate:
        nested: dict[str, dict[str, Any]] = {}
        for key, value in point.items():
            section, _, field = key.partition(".")
            nested.setdefault(section, {})[field] = value
        points.append(nested)
    return points


def population_size(config: SweepConfig) -> int | None:
    """Trials per generation of cmaes/nsga2 (None: CMA-ES's own 4 + floor(3 ln n) for n
    numeric dimensions, which its step-size rules are tuned for)."""
    if config.search.population_size is not None:
        return config.search.population_size
    if config.search.algorithm == "nsga2":
        return nsga2_population_size(config.num_samples)
    return None


def optuna_sampler(config: SweepConfig, n_initial: int) -> Any:
    """The optuna sampler of `search.algorithm` (optuna, cmaes or nsga2), seeded by search.seed."""
    import optuna

    search = config.search
    if search.algorithm == "optuna":
        return optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=n_initial)
    if search.algorithm == "nsga2":
        return optuna.samplers.NSGAIISampler(
            population_size=search.population_size or nsga2_population_size(config.num_samples),
            seed=search.seed)
    if search.algorithm != "cmaes":
        raise ValueError(f"search.algorithm: {search.algorithm!r} is not an optuna sampler; "
                         "use optuna, cmaes or nsga2")
    if importlib.util.find_spec("cmaes") is None:
        raise MissingDependencyError(
            "search.algorithm: cmaes needs the `cmaes` package (optuna's CMA-ES runs on it): "
            "`pip install cmaes`, or reinstall this project, which depends on it")
    stepped = any(isinstance(d, RandInt | QUniform) for d in config.search_space.values())
    choices = any(isinstance(d, Choice | Grid) for d in config.search_space.values())
    with warnings.catch_warnings():  # with_margin is "experimental" in optuna since 3.1
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.CmaEsSampler(
            seed=search.seed, n_startup_trials=search.n_initial_points or 1,
            popsize=population_size(config), with_margin=stepped,
            # choice dimensions are random by design here (documented), not worth a warning
            warn_independent_sampling=not choices,
        )


def build_search_alg(config: SweepConfig) -> Any:
    search = config.search
    n_initial = search.n_initial_points or default_initial_points(config.num_samples)
    points = nested_points(config) or None
    if search.algorithm == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        alg: Any = HyperOptSearch(n_initial_points=n_initial, random_state_seed=search.seed,
                                  points_to_evaluate=points)
    elif search.algorithm in ("optuna", "cmaes", "nsga2"):
        from ray.tune.search.optuna import OptunaSearch

        sampler = optuna_sampler(config, n_initial)
        # Optuna's space is flat ("train/learning_rate"), and so must its warm-start points be.
        flat = [{f"{s}/{f}": v for s, fields in p.items() for f, v in fields.items()}
                for p in points or []]
        alg = OptunaSearch(sampler=sampler, points_to_evaluate=flat or None)
    elif search.algorithm in ("random", "grid"):
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(
            random_state=search.seed, max_concurrent=search.max_concurrent_trials or 0,
            points_to_evaluate=points,
        )
    else:  # config validation makes this unreachable; keep the message for direct callers
        raise ValueError(
            f"search.algorithm: unknown {search.algorithm!r}; use hyperopt, optuna, cmaes, "
            "nsga2, random, grid"
        )
    if search.max_concurrent_trials:
        from ray.tune.search import ConcurrencyLimiter

        return ConcurrencyLimiter(alg, max_concurrent=search.max_concurrent_trials)
    return alg
