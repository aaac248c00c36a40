"""Search algorithms by name. Heavy imports are lazy; an unknown name lists the valid ones."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.config.schema import SweepConfig


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


def build_search_alg(config: SweepConfig) -> Any:
    search = config.search
    n_initial = search.n_initial_points or default_initial_points(config.num_samples)
    points = nested_points(config) or None
    if search.algorithm == "hyperopt":
        from ray.tune.search.hyperopt import HyperOptSearch

        alg: Any = HyperOptSearch(n_initial_points=n_initial, random_state_seed=search.seed,
                                  points_to_evaluate=points)
    elif search.algorithm == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        sampler = optuna.samplers.TPESampler(seed=search.seed, n_startup_trials=n_initial)
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
            f"search.algorithm: unknown {search.algorithm!r}; use hyperopt, optuna, random, grid"
        )
    if search.max_concurrent_trials:
        from ray.tune.search import ConcurrencyLimiter

        return ConcurrencyLimiter(alg, max_concurrent=search.max_concurrent_trials)
    return alg
