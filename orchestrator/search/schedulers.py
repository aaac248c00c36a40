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
        pbt = synchronous_pbt_class() if s.synchronous else schedulers.PopulationBasedTraining
        return pbt(
            time_attr=time_attr,
            perturbation_interval=s.perturbation_interval or grace,
            hyperparam_mutations=dict(to_pbt_mutations(config)),  # type: ignore[arg-type]
            quantile_fraction=s.quantile_fraction,
            resample_probability=s.resample_probability,
            synch=s.synchronous,
        )
    return schedulers.FIFOScheduler()


def synchronous_pbt_class() -> type:
    """Ray's synchronous PBT, with the sync point that a finishing trial can leave undone.

    Synchronous PBT pauses each trial at a perturbation point until every live trial has
    reached it, and only the result that completes the set starts the sync. A trial that ends
    without such a result (its last report comes before a full interval has passed since its
    last perturbation, e.g. after it cloned a donor) leaves the others paused past the sync
    point with nothing running: Ray then waits forever (seen here: 3 trials PAUSED, 1
    TERMINATED; Ray issues #23424, #12122, PR #28511). When Tune asks for a trial to run and
    every live trial is paused at or past the sync point, this runs the due sync.
    """
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import PopulationBasedTraining

    class SynchronousPBT(PopulationBasedTraining):
        def choose_trial_to_run(self, tune_controller: Any) -> Any:
            trial = super().choose_trial_to_run(tune_controller)
            if trial is not None:
                return trial
            live = tune_controller.get_live_trials()
            paused = [t for t in live if t.status == Trial.PAUSED]
            if not paused or len(paused) != len(live):
                return None  # something runs (its result may start the sync) or is pending
            times = [self._trial_state[t].last_train_time for t in paused]
            if min(times) < self._next_perturbation_sync:
                return None
            lower, upper = self._quantiles()
            middle = [t for t in paused if t not in lower and t not in upper]
            for t in upper + middle + lower:  # strong trials checkpoint before weak ones copy
                self._trial_state[t].last_perturbation_time = max(times)
                self._checkpoint_or_exploit(t, tune_controller, upper, lower)
            self._next_perturbation_sync = max(
                self._next_perturbation_sync + self._perturbation_interval, max(times))
            return super().choose_trial_to_run(tune_controller)

    return SynchronousPBT
