"""Turn the config's `search_space` into Ray Tune's param space (nested by section)."""

from __future__ import annotations

from typing import Any

from ray import tune

from orchestrator.config.schema import (
    Choice,
    Grid,
    LogUniform,
    QUniform,
    RandInt,
    SweepConfig,
    Uniform,
)


def to_tune_domain(dim: Any) -> Any:
    if isinstance(dim, LogUniform):
        return tune.loguniform(dim.low, dim.high)
    if isinstance(dim, QUniform):
        return tune.quniform(dim.low, dim.high, dim.q)
    if isinstance(dim, Uniform):
        return tune.uniform(dim.low, dim.high)
    if isinstance(dim, RandInt):
        return tune.randint(dim.low, dim.high + 1)  # Tune's upper bound is exclusive
    if isinstance(dim, Choice):
        return tune.choice(dim.values)
    if isinstance(dim, Grid):
        return tune.grid_search(dim.values)
    raise TypeError(f"unknown search dimension {dim!r}")


def to_param_space(config: SweepConfig) -> dict[str, dict[str, Any]]:
    """`{"train.learning_rate": dim}` -> `{"train": {"learning_rate": tune.loguniform(...)}}`.

    With `search.algorithm: grid`, choices are enumerated like grid dimensions.
    """
    space: dict[str, dict[str, Any]] = {}
    for key, dim in config.search_space.items():
        section, _, field = key.partition(".")
        if config.search.algorithm == "grid" and isinstance(dim, Choice):
            dim = Grid(type="grid", values=dim.values)
        space.setdefault(section, {})[field] = to_tune_domain(dim)
    return space


def to_pbt_mutations(config: SweepConfig) -> dict[str, dict[str, Any]]:
    """PBT resamples from the same domains (grid values become a plain choice)."""
    mutations: dict[str, dict[str, Any]] = {}
    for key, dim in config.search_space.items():
        section, _, field = key.partition(".")
        domain = tune.choice(dim.values) if isinstance(dim, Grid) else to_tune_domain(dim)
        mutations.setdefault(section, {})[field] = domain
    return mutations


def grid_size(config: SweepConfig) -> int:
    size = 1
    for dim in config.search_space.values():
        if isinstance(dim, Grid) or (config.search.algorithm == "grid" and isinstance(dim, Choice)):
            size *= len(dim.values)
    return size
