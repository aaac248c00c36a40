"""Search methods compared on a learning-curve table: name -> builder of (searcher, scheduler).

Every method gets the same table, the same optimizer-step budget (`Setting.budget_steps`,
16 full-length trials' worth by default; `random_fifo_4x` gets 4x), enforced by `BudgetStopper`
(Tune's `stop_all` once the steps charged across all trials reach the budget), and the same
concurrency: 4 trials at a time (4 logical CPUs, 1 per trial); model-based searchers are also
wrapped in a `ConcurrencyLimiter(4)` so they do not suggest ahead of the results.

The product default (`hyperopt_asha`) is mirrored exactly from `orchestrator/searchers.py` and
`orchestrator/schedulers.py` (copied, not imported): hyperopt TPE with
`n_initial_points = max(2, min(20, ceil(num_samples / 4)))` and the sweep's seed, ASHA on
`step` with a grace period of two evaluations, reduction factor 3, `max_t` = the full budget.
`num_samples` in that formula is the trial count a user would write for this budget
(budget / full-length trial = 16, so 4 start-up trials); the sweep's own `num_samples` is set
high enough that the budget, not the count, ends every sweep except random + FIFO, which runs
exactly budget / full-length trials.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.curves.replay import FIDELITY_KEY, flatten, nest, search_space
from benchmarks.curves.table import Table

DEFAULT = "hyperopt_asha"
# The methods a user selects with the product's own settings (`search:` / `scheduler:`), and
# those settings: the candidates for the default. The others (BOHB, DEHB, top-k, the noise
# margin, rungs on the loss, the LoRA prior) are measured but are not product settings.
PRODUCT_SETTINGS: dict[str, dict[str, Any]] = {
    "random_fifo": {"search.algorithm": "random", "scheduler.type": "fifo"},
    "random_asha": {"search.algorithm": "random", "scheduler.type": "asha"},
    "hyperopt_asha": {"search.algorithm": "hyperopt", "scheduler.type": "asha"},
    "optuna_asha": {"search.algorithm": "optuna", "scheduler.type": "asha"},
    "optuna_median": {"search.algorithm": "optuna", "scheduler.type": "median"},
    "cmaes_asha": {"search.algorithm": "cmaes", "scheduler.type": "asha"},
    "nsga2_asha": {"search.algorithm": "nsga2", "scheduler.type": "asha"},
    "hyperopt_asha_init2": {"search.algorithm": "hyperopt", "search.n_initial_points": 2},
    "hyperopt_asha_init8": {"search.algorithm": "hyperopt", "search.n_initial_points": 8},
    "hyperopt_asha_grace1": {"search.algorithm": "hyperopt",
                             "scheduler.grace_period": "one evaluation"},
    "hyperopt_asha_rf2": {"search.algorithm": "hyperopt", "scheduler.reduction_factor": 2},
}
CONCURRENCY = 4
BASE_TRIALS = 16  # the budget, in full-length trials


@dataclass(frozen=True)
class Setting:
    """What every method of one sweep shares."""

    table: Table
    seed: int
    budget_steps: int
    concurrency: int = CONCURRENCY
    workdir: Path = Path("/tmp/curves-compare")

    @property
    def trials_in_budget(self) -> int:
        return max(1, self.budget_steps // self.table.max_steps)

    @property
    def grace(self) -> int:
        """Two evaluations (the product's default grace period)."""
        return min(2 * self.table.schedule[0], self.table.max_steps)


@dataclass
class Sweep:
    """One method's sweep: what `Tuner` gets, plus what the replay needs."""

    search_alg: Any
    scheduler: Any
    num_samples: int
    budget_steps: int
    param_space: dict[str, Any]
    checkpoints: bool = False
    transform: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def default_initial_points(num_samples: int) -> int:
    """orchestrator.searchers.default_initial_points, copied (nothing imported from there)."""
    return max(2, min(20, math.ceil(num_samples / 4)))


def enough_samples(s: Setting, budget: int | None = None) -> int:
    """More trials than the budget can pay for even if every trial stops at its first report."""
    return (budget or s.budget_steps) // s.table.schedule[0] + s.concurrency + 1


def is_repeat(last: dict[str, int], trial_id: str, result: dict[str, Any]) -> bool:
    """Tune hands a trial's last result to the stopper a second time as the trial completes:
    the same report index as that trial's previous result is a repeat. (A smaller index is a
    trial restarted from scratch, whose steps are charged again.)"""
    index = int(result.get("report_index", -1))
    repeat = last.get(trial_id) == index
    last[trial_id] = index
    return repeat


class BudgetStopper:
    """Stops the whole sweep once the optimizer steps charged to all its trials reach the budget.

    Every replay report carries `delta_steps` (the steps since that trial's previous report),
    so a paused and resumed trial is not charged twice and a restarted one is charged again.
    """

    def __init__(self, budget_steps: int) -> None:
        self.budget_steps = budget_steps
        self.charged = 0
        self._last: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if not is_repeat(self._last, trial_id, result):
            self.charged += int(result.get("delta_steps", 0))
        return False

    def stop_all(self) -> bool:
        return self.charged >= self.budget_steps


def _stopper_class() -> type:
    from ray.tune import Stopper

    return type("TuneBudgetStopper", (BudgetStopper, Stopper), {})


def make_stopper(budget_steps: int) -> Any:
    """A `ray.tune.Stopper` (Tune checks the type) with BudgetStopper's behaviour."""
    return _stopper_class()(budget_steps)


# --- schedulers -------------------------------------------------------------------------------

def asha(s: Setting, *, metric: str | None = None, mode: str | None = None,
         grace: int | None = None, reduction_factor: float = 3.0, margin: float = 0.0,
         relative_margin: bool = False) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    kwargs = {"time_attr": "step", "metric": metric or s.table.metric,
              "mode": mode or s.table.mode, "max_t": s.table.max_steps,
              "grace_period": min(grace or s.grace, s.table.max_steps),
              "reduction_factor": reduction_factor, "brackets": 1}
    if margin <= 0:
        return ASHAScheduler(**kwargs)
    return _noise_aware_asha()(margin=margin, relative_margin=relative_margin, **kwargs)


def _noise_aware_asha() -> type:
    """ASHA whose rung cut-off is lowered by the evaluation noise: a trial is stopped only when
    it is worse than the rung's cut-off by more than `margin` (absolute, or relative to the
    cut-off), so one unlucky evaluation does not end a good configuration."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.schedulers.async_hyperband import _Bracket

    class _MarginBracket(_Bracket):
        margin = 0.0
        relative = False

        def cutoff(self, recorded: dict[str, float]) -> Any:
            value = super().cutoff(recorded)
            if value is None:
                return None
            return value - (self.margin * abs(value) if self.relative else self.margin)

    class NoiseAwareASHA(ASHAScheduler):
        def __init__(self, *, margin: float, relative_margin: bool, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            for bracket in self._brackets:
                bracket.__class__ = _MarginBracket
                bracket.margin, bracket.relative = margin, relative_margin

    return NoiseAwareASHA


def eval_noise_margin(table: Table, fraction: float = 0.5) -> tuple[float, bool]:
    """`fraction` of one standard error of the metric on the validation set: for an F1 / an
    accuracy in [0, 1], sqrt(0.25 / n) with n the validation examples the build scored (the
    binomial worst case); for a loss, 1% of the cut-off (relative)."""
    if table.mode == "min":
        return 0.01 * fraction * 2, True
    sweep = table.raw.get("build", {}).get("sweep", {})
    n = int(sweep.get("data", {}).get("max_eval_examples") or 200)
    return fraction * math.sqrt(0.25 / n), False


def _topk_scheduler() -> type:
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class TopKAfterFirstRung(FIFOScheduler):
        """Synchronous: every one of the round's `n` trials runs to `rung` steps and pauses;
        once all have, the top `k` resume to the full budget and the rest stop."""

        def __init__(self, *, metric: str, mode: str, rung: int, n: int, k: int) -> None:
            super().__init__()
            self._metric_name, self._sign = metric, 1.0 if mode == "max" else -1.0
            self.rung, self.n, self.k = rung, n, k
            self.scores: dict[str, float] = {}
            self.promoted: set[str] | None = None

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            if self.promoted is not None and trial.trial_id in self.promoted:
                return TrialScheduler.CONTINUE
            if result.get("step", 0) < self.rung:
                return TrialScheduler.CONTINUE
            self.scores[trial.trial_id] = self._sign * float(result[self._metric_name])
            if len(self.scores) < self.n:
                return TrialScheduler.PAUSE
            ranked = sorted(self.scores, key=lambda t: (-self.scores[t], t))
            self.promoted = set(ranked[: self.k])
            for other in tune_controller.get_trials():
                if (other.trial_id in self.scores and other.trial_id not in self.promoted
                        and other.status == Trial.PAUSED):
                    tune_controller.stop_trial(other)
            if trial.trial_id in self.promoted:
                return TrialScheduler.CONTINUE
            return TrialScheduler.STOP

        def choose_trial_to_run(self, tune_controller: Any) -> Any:
            if self.promoted is not None:  # a loser that was still pausing at the decision
                for trial in tune_controller.get_trials():
                    if trial.status == Trial.PAUSED and trial.trial_id not in self.promoted:
                        tune_controller.stop_trial(trial)
            for trial in tune_controller.get_trials():
                if trial.status == Trial.PENDING:
                    return trial
            for trial in tune_controller.get_trials():
                if (trial.status == Trial.PAUSED and self.promoted is not None
                        and trial.trial_id in self.promoted):
                    return trial
            return None

        def debug_string(self) -> str:
            return f"top {self.k} of {self.n} after {self.rung} steps"

    return TopKAfterFirstRung


# --- searchers --------------------------------------------------------------------------------

def limited(alg: Any, s: Setting) -> Any:
    from ray.tune.search import ConcurrencyLimiter

    return ConcurrencyLimiter(alg, max_concurrent=s.concurrency)


def hyperopt(s: Setting, n_initial: int | None = None) -> Any:
    from ray.tune.search.hyperopt import HyperOptSearch

    n = n_initial or default_initial_points(s.trials_in_budget)
    return limited(HyperOptSearch(metric=s.table.metric, mode=s.table.mode,
                                  n_initial_points=n, random_state_seed=s.seed), s)


def optuna(s: Setting, n_initial: int | None = None) -> Any:
    import optuna as _optuna
    from ray.tune.search.optuna import OptunaSearch

    _optuna.logging.set_verbosity(_optuna.logging.WARNING)
    n = n_initial or default_initial_points(s.trials_in_budget)
    sampler = _optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=n)
    return limited(OptunaSearch(metric=s.table.metric, mode=s.table.mode, sampler=sampler), s)


def default_population_size(num_samples: int) -> int:
    """orchestrator.search.searchers.nsga2_population_size, copied: a quarter of the
    sweep, 2 to 50."""
    return max(2, min(50, num_samples // 4))


def evolutionary(s: Setting, algorithm: str) -> Any:
    """The product's `search.algorithm: cmaes` / `nsga2` samplers (orchestrator.searchers,
    mirrored): CMA-ES with its own population and 1 start-up trial (a table's dimensions are
    continuous or choices, so no margin; choices are sampled at random); NSGA-II with a quarter
    of the trials in the budget per generation."""
    import optuna as _optuna
    from ray.tune.search.optuna import OptunaSearch

    _optuna.logging.set_verbosity(_optuna.logging.WARNING)
    if algorithm == "nsga2":
        sampler: Any = _optuna.samplers.NSGAIISampler(
            population_size=default_population_size(s.trials_in_budget), seed=s.seed)
    else:
        sampler = _optuna.samplers.CmaEsSampler(seed=s.seed, n_startup_trials=1,
                                                warn_independent_sampling=False)
    return limited(OptunaSearch(metric=s.table.metric, mode=s.table.mode, sampler=sampler), s)


def random_search(s: Setting) -> Any:
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(random_state=s.seed)


def _configspace(table: Table, space: dict[str, Any]) -> Any:
    """The param space as a ConfigSpace (flat "section/field" names, as Tune's BOHB uses)."""
    import ConfigSpace as CS
    from ray.tune.search.sample import Categorical, Float

    cs = CS.ConfigurationSpace()
    for key, domain in flatten(space).items():
        name = key.replace(".", "/")
        if isinstance(domain, Categorical):
            cs.add(CS.CategoricalHyperparameter(name, list(domain.categories)))
        elif isinstance(domain, Float):
            log = type(domain.get_sampler()).__name__ == "_LogUniform"
            cs.add(CS.UniformFloatHyperparameter(name, domain.lower, domain.upper, log=log))
        else:
            raise TypeError(f"{key}: no ConfigSpace for {domain!r}")
    return cs


def _dehb_searcher() -> type:
    from ray.tune.search import Searcher

    class DEHBSearcher(Searcher):
        """DEHB (Awad et al. 2021, `pip install dehb`) through its ask/tell API.

        Each `ask()` is a job: a configuration and a fidelity (a step budget). The job becomes
        one Tune trial that the replay runs to that budget (`FIDELITY_KEY`, rounded up to the
        next evaluation); its last metric is told back as the fitness (DEHB minimises), its
        steps as the cost. DEHB as published re-trains a promoted configuration from scratch at
        the larger fidelity, so it pays for those steps again: that is the method measured.
        """

        def __init__(self, s: Setting, space: dict[str, Any], eta: int = 2) -> None:
            super().__init__(metric=s.table.metric, mode=s.table.mode)
            from dehb import DEHB

            self._sign = -1.0 if s.table.mode == "max" else 1.0
            self._schedule = list(s.table.schedule)
            self._cs = _configspace(s.table, space)
            out = s.workdir / f"dehb-{s.seed}"
            self._dehb = DEHB(cs=self._cs, min_fidelity=self._schedule[0],
                              max_fidelity=self._schedule[-1], eta=eta, n_workers=1,
                              seed=int(s.seed), output_path=str(out), save_freq=None,
                              log_level="ERROR")
            self._jobs: dict[str, dict[str, Any]] = {}

        def set_search_properties(self, metric: str | None, mode: str | None,
                                  config: dict, **spec: Any) -> bool:
            return True

        def _budget(self, fidelity: float) -> int:
            return next((step for step in self._schedule if step >= fidelity - 1e-9),
                        self._schedule[-1])

        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            job = self._dehb.ask()
            self._jobs[trial_id] = job
            values = dict(job["config"])
            flat = {k.replace("/", "."): (v.item() if hasattr(v, "item") else v)
                    for k, v in values.items()}
            return {**nest(flat), FIDELITY_KEY: self._budget(float(job["fidelity"]))}

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            job = self._jobs.pop(trial_id, None)
            if job is None:
                return
            value = None if result is None else result.get(self.metric)
            fitness = 1e9 if error or value is None else self._sign * float(value)
            cost = float(result.get("step", 0)) if result else 0.0
            self._dehb.tell(job, {"fitness": fitness, "cost": cost})

    return DEHBSearcher


# --- the methods ------------------------------------------------------------------------------

Builder = Callable[[Setting], Sweep]


def _sweep(s: Setting, alg: Any, scheduler: Any, *, num_samples: int | None = None,
           **kw: Any) -> Sweep:
    return Sweep(search_alg=alg, scheduler=scheduler,
                 num_samples=num_samples or enough_samples(s), budget_steps=s.budget_steps,
                 param_space=kw.pop("param_space", None) or search_space(s.table.dimensions),
                 **kw)


def random_fifo(s: Setting) -> Sweep:
    from ray.tune.schedulers import FIFOScheduler

    return _sweep(s, random_search(s), FIFOScheduler(), num_samples=s.trials_in_budget)


def random_fifo_4x(s: Setting) -> Sweep:
    return random_fifo(replace(s, budget_steps=4 * s.budget_steps))


def random_asha(s: Setting) -> Sweep:
    return _sweep(s, random_search(s), asha(s))


def hyperopt_asha(s: Setting) -> Sweep:
    """The product default."""
    n = default_initial_points(s.trials_in_budget)
    return _sweep(s, hyperopt(s), asha(s), notes={"n_initial_points": n, "grace": s.grace})


def optuna_asha(s: Setting) -> Sweep:
    return _sweep(s, optuna(s), asha(s))


def cmaes_asha(s: Setting) -> Sweep:
    """optuna's CMA-ES (the product's `search.algorithm: cmaes`) + the default ASHA."""
    return _sweep(s, evolutionary(s, "cmaes"), asha(s))


def nsga2_asha(s: Setting) -> Sweep:
    """optuna's NSGA-II (the product's `search.algorithm: nsga2`) + the default ASHA."""
    return _sweep(s, evolutionary(s, "nsga2"), asha(s),
                  notes={"population_size": default_population_size(s.trials_in_budget)})


def optuna_median(s: Setting) -> Sweep:
    """What HF `Trainer.hyperparameter_search` (optuna backend: TPE, median pruner) does, as
    Tune's MedianStoppingRule with the product's median settings (grace: two evaluations)."""
    from ray.tune.schedulers import MedianStoppingRule

    rule = MedianStoppingRule(time_attr="step", metric=s.table.metric, mode=s.table.mode,
                              grace_period=s.grace, min_samples_required=3)
    # the rule pauses a trial while too few others have reached its step: it resumes from its
    # checkpoint (as the product's trials do), not from scratch
    return _sweep(s, optuna(s), rule, checkpoints=True)


def bohb(s: Setting) -> Sweep:
    from ray.tune.schedulers import HyperBandForBOHB
    from ray.tune.search.bohb import TuneBOHB

    alg = limited(TuneBOHB(metric=s.table.metric, mode=s.table.mode, seed=s.seed), s)
    hb = HyperBandForBOHB(time_attr="step", metric=s.table.metric, mode=s.table.mode,
                          max_t=s.table.max_steps, reduction_factor=3)
    return _sweep(s, alg, hb, checkpoints=True)


def dehb(s: Setting) -> Sweep:
    from ray.tune.schedulers import FIFOScheduler

    space = search_space(s.table.dimensions)
    return _sweep(s, limited(_dehb_searcher()(s, space), s), FIFOScheduler(), param_space=space)


def topk_first_eval(s: Setting) -> Sweep:
    """arXiv 2307.15422's recipe: train every candidate briefly, continue the top k. Here a
    table's run is one pass over its data, so "one epoch" is the first evaluation: half the
    budget trains n random configurations to it, the other half continues the top k."""
    from ray.tune.schedulers import TrialScheduler  # noqa: F401  (Tune must be importable)

    rung, full = s.table.schedule[0], s.table.max_steps
    n = max(s.concurrency, (s.budget_steps // 2) // rung)
    k = max(1, (s.budget_steps - n * rung) // (full - rung))
    scheduler = _topk_scheduler()(metric=s.table.metric, mode=s.table.mode, rung=rung, n=n, k=k)
    return _sweep(s, random_search(s), scheduler, num_samples=n, checkpoints=True,
                  notes={"n": n, "k": k, "rung": rung})


def hyperopt_asha_loss(s: Setting) -> Sweep:
    """Rung decisions on the validation loss (smoother than F1 on 200 examples); the searcher
    and the selection still use the metric."""
    return _sweep(s, hyperopt(s), asha(s, metric="eval_loss", mode="min"))


def hyperopt_asha_margin(s: Setting) -> Sweep:
    """Promotions that allow for evaluation noise: stop only below cut-off - half a standard
    error of the metric on the validation set."""
    margin, relative = eval_noise_margin(s.table)
    return _sweep(s, hyperopt(s), asha(s, margin=margin, relative_margin=relative),
                  notes={"margin": margin, "relative": relative})


def lora_prior_space(table: Table) -> dict[str, Any]:
    """The table's space with the learning rate searched as the full fine-tuning rate
    (`train.lr_full`, the lower part of the table's range) that LoRA trials multiply by 10."""
    from ray import tune

    flat = flatten(search_space(table.dimensions))
    lr = next(d for d in table.dimensions if d.key == "train.learning_rate")
    flat.pop("train.learning_rate")
    flat["train.lr_full"] = tune.loguniform(lr.low, lr.high / 10.0)
    return nest(flat)


def hyperopt_asha_lora_prior(s: Setting) -> Sweep:
    if not any(d.key == "train.finetune" for d in s.table.dimensions):
        return hyperopt_asha(s)
    return _sweep(s, hyperopt(s), asha(s), param_space=lora_prior_space(s.table),
                  transform="lora_lr_prior")


def hyperopt_asha_init2(s: Setting) -> Sweep:
    return _sweep(s, hyperopt(s, n_initial=2), asha(s))


def hyperopt_asha_init8(s: Setting) -> Sweep:
    return _sweep(s, hyperopt(s, n_initial=8), asha(s))


def hyperopt_asha_grace1(s: Setting) -> Sweep:
    """Grace one evaluation (rungs at 12 and 36 steps with reduction factor 3)."""
    return _sweep(s, hyperopt(s), asha(s, grace=s.table.schedule[0]))


def hyperopt_asha_rf2(s: Setting) -> Sweep:
    """Reduction factor 2: keep half at each rung (24 steps)."""
    return _sweep(s, hyperopt(s), asha(s, reduction_factor=2.0))


def hyperopt_asha_grace1_rf2(s: Setting) -> Sweep:
    """Grace one evaluation, reduction factor 2 (rungs at 12 and 24 steps)."""
    return _sweep(s, hyperopt(s), asha(s, grace=s.table.schedule[0], reduction_factor=2.0))


METHODS: dict[str, Builder] = {
    "random_fifo": random_fifo,
    "random_fifo_4x": random_fifo_4x,
    "random_asha": random_asha,
    "hyperopt_asha": hyperopt_asha,
    "optuna_asha": optuna_asha,
    "optuna_median": optuna_median,
    "cmaes_asha": cmaes_asha,
    "nsga2_asha": nsga2_asha,
    "bohb": bohb,
    "dehb": dehb,
    "topk_first_eval": topk_first_eval,
    "hyperopt_asha_loss": hyperopt_asha_loss,
    "hyperopt_asha_margin": hyperopt_asha_margin,
    "hyperopt_asha_lora_prior": hyperopt_asha_lora_prior,
    "hyperopt_asha_init2": hyperopt_asha_init2,
    "hyperopt_asha_init8": hyperopt_asha_init8,
    "hyperopt_asha_grace1": hyperopt_asha_grace1,
    "hyperopt_asha_rf2": hyperopt_asha_rf2,
    "hyperopt_asha_grace1_rf2": hyperopt_asha_grace1_rf2,
}
def same_as(name: str, table: Table) -> str | None:
    """The method that `name` is on `table` by construction, or None: the loss variant where
    the metric already is the validation loss, the LoRA prior where nothing is fully
    fine-tuned. The comparison does not run such a method there; it reports the other's
    figures under both names (`same_as` in the result says so)."""
    if name == "hyperopt_asha_loss" and table.metric == "eval_loss":
        return "hyperopt_asha"
    if name == "hyperopt_asha_lora_prior" and not any(
            d.key == "train.finetune" for d in table.dimensions):
        return "hyperopt_asha"
    return None


NEEDS = {"bohb": ("hpbandster", "ConfigSpace"), "dehb": ("dehb", "ConfigSpace"),
         "cmaes_asha": ("cmaes",)}


def available(name: str) -> bool:
    """A method whose optional library is installed (`pip install hpbandster ConfigSpace`,
    `pip install dehb`; dehb 0.1.2 pins numpy < 2: `pip install --no-deps dehb` plus
    `pip install ConfigSpace loguru distributed`)."""
    import importlib.util

    return all(importlib.util.find_spec(module) is not None for module in NEEDS.get(name, ()))


QUICK_METHODS = ("random_fifo", "random_fifo_4x", "hyperopt_asha", "optuna_asha", "bohb",
                 "dehb", "topk_first_eval")
