"""Trial schedulers by name: ASHA (default), HyperBand, median stopping, PBT, FIFO."""

from __future__ import annotations

from typing import Any

from orchestrator.config.schema import SweepConfig
from orchestrator.search.space import to_pbt_mutations

TIME_ATTRS = {"steps": "step", "tokens": "tokens_seen"}


def build_scheduler(config: SweepConfig, max_steps: int, tokens_per_step: float) -> Any:
    """`max_steps`: the most optimizer steps any trial can take; `tokens_per_step`: the mean
    training tokens per step, which converts step budgets when rungs count tokens."""
    from ray.tune import schedulers

    s = config.scheduler
    time_attr = TIME_ATTRS[s.time_unit]
    per_step = 1.0 if s.time_unit == "steps" else tokens_per_step
    # Two evaluations' worth of budget: one evaluation is too noisy to stop a trial on.
    grace = s.grace_period or round(2 * config.train.eval_every_steps * per_step)
    max_t = s.max_t or max(round(max_steps * per_step), grace)
    if s.type == "asha":
        return schedulers.ASHAScheduler(
            time_attr=time_attr, max_t=max_t, grace_period=min(grace, max_t),
            reduction_factor=s.reduction_factor, brackets=s.brackets,
        )
    if s.type == "hyperband":
        return schedulers.HyperBandScheduler(
            time_attr=time_attr, max_t=max_t, reduction_factor=s.reduction_factor
        )
    if s.type == "median":
        return schedulers.MedianStoppingRule(
            time_attr=time_attr, grace_period=grace, min_samples_required=s.min_samples_required
        )
    if s.type == "pbt":
        return schedulers.PopulationBasedTraining(
            time_attr=time_attr,
            perturbation_interval=s.perturbation_interval or grace,
            hyperparam_mutations=dict(to_pbt_mutations(config)),  # type: ignore[arg-type]
            quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability,
            synch=s.synchronous,
        )
    return schedulers.FIFOScheduler()
