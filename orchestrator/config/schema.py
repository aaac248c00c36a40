"""The sweep config: one YAML file, one pydantic model, validated once at load.

Sections: `model`, `data`, `train`, `lora` (what a trial reads, declared in `trainables.config`),
plus what only the driver reads: `search_space`, `search`, `scheduler`, `resources`, the metric
and where results go. Cross-field rules name both fields and the fix.
"""

from __future__ import annotations

import math
import re
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from orchestrator.config.errors import did_you_mean
from orchestrator.config.sections import LoggingConfig, QualityConfig
from trainables.config import (
    SEARCHABLE_FIELDS,
    SEARCHABLE_SECTIONS,
    SEED_MAX,
    DataConfig,
    DistillConfig,
    LoraConfig,
    ModelConfig,
    StrictModel,
    Task,
    TrainConfig,
    is_stored,
    stored_context,
)
from trainables.metrics import (
    OPTIONAL_METRICS,
    known_metric_names,
    metric_label_keys,
    metric_mode,
    per_class_metric,
)

# --- search space dimensions ------------------------------------------------------------------


class _DimensionModel(BaseModel):
    """StrictModel's rules without its per-field check, which pydantic does not allow on the
    `type` tag of a discriminated union."""

    model_config = StrictModel.model_config


class _Range(_DimensionModel):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if not self.low < self.high:
            raise ValueError(
                f"`low < high` must hold, but got (low={self.low}, high={self.high}); swap them"
            )
        return self


class LogUniform(_Range):
    type: Literal["loguniform"]

    @model_validator(mode="after")
    def _positive(self) -> LogUniform:
        if self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got low={self.low}; use e.g. 1e-6")
        return self


class Uniform(_Range):
    type: Literal["uniform"]


class QUniform(_Range):
    type: Literal["quniform"]
    q: float = Field(gt=0, description="Values are rounded to multiples of q.")


class RandInt(_DimensionModel):
    type: Literal["randint"]
    low: int
    high: int = Field(description="Inclusive upper bound.")

    @model_validator(mode="after")
    def _ordered(self) -> RandInt:
        if not self.low < self.high:
            raise ValueError(f"`low < high` must hold, but got (low={self.low}, high={self.high})")
        return self


class Choice(_DimensionModel):
    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)


class Grid(_DimensionModel):
    type: Literal["grid"]
    values: list[Any] = Field(min_length=1)


Dimension = Annotated[
    LogUniform | Uniform | QUniform | RandInt | Choice | Grid, Field(discriminator="type")
]
DIMENSION_TYPES = [typing.get_args(d.model_fields["type"].annotation)[0]
                   for d in (LogUniform, Uniform, QUniform, RandInt, Choice, Grid)]

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")

# --- driver-side sections ---------------------------------------------------------------------


# Searchers that learn from results (they need dimensions to search and cannot enumerate grids).
MODEL_BASED = ("hyperopt", "optuna", "cmaes", "nsga2")
EVOLUTIONARY = ("cmaes", "nsga2")


def nsga2_population_size(num_samples: int) -> int:
    """nsga2's trials per generation when `search.population_size` is unset: a quarter of the
    sweep (2 to 50), about four generations. optuna's default of 50 would make a 32-trial sweep
    one random generation."""
    return max(2, min(50, num_samples // 4))


def cmaes_population_size(numeric_dimensions: int) -> int:
    """CMA-ES's own trials per generation for n >= 1 numeric dimensions, 4 + floor(3 ln n)
    (the `cmaes` package's default, which its step-size rules are tuned for)."""
    return 4 + math.floor(3 * math.log(numeric_dimensions))


class SearchConfig(StrictModel):
    algorithm: Literal["hyperopt", "optuna", "cmaes", "nsga2", "random", "grid"] = Field(
        "hyperopt", description="hyperopt/optuna: TPE (Bayesian); cmaes: optuna's CMA-ES "
        "(evolution strategy over the numeric dimensions; choice ones are sampled at random); "
        "nsga2: optuna's NSGA-II (a genetic algorithm for one metric); random; grid: every "
        "combination."
    )
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seeds the search algorithm.")
    n_initial_points: int | None = Field(
        None, ge=1, description="Random trials before TPE (or CMA-ES) takes over. Default: "
        "from num_samples for TPE, 1 for cmaes; nsga2's first generation is its random start."
    )
    population_size: int | None = Field(
        None, ge=2, description="cmaes/nsga2: trials per generation; a generation learns from "
        "the previous one once population_size of its trials have finished. Default: cmaes "
        "4 + floor(3 ln n) for n numeric dimensions (CMA-ES's own); nsga2 num_samples / 4 (2 "
        "to 50), about four generations. Set or default, it must leave a trial for a second "
        "generation: population_size (+ n_initial_points for cmaes) < num_samples."
    )
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Default: as many as the cluster's resources fit."
    )
    points_to_evaluate: list[dict[str, Any]] = Field(
        default_factory=list, description="Configurations tried first, keyed like search_space "
        "(`{train.learning_rate: 3.0e-4, lora.r: 16}`): a warm start from known-good values. "
        "They count toward num_samples; the searcher learns from their results.",
    )


class SchedulerConfig(StrictModel):
    type: Literal["asha", "hyperband", "median", "pbt", "fifo"] = Field(
        "asha", description="asha: async successive halving; pbt: population based training "
        "(perturbs searched values, continues from the donor's checkpoint); fifo: no stopping."
    )
    time_unit: Literal["steps", "tokens"] = Field(
        "steps", description="What rungs count: optimizer steps or training tokens."
    )
    grace_period: int | None = Field(
        None, ge=1, description="Minimum budget before a trial can be stopped. "
        "Default: two evaluations (2 x train.eval_every_steps, in steps)."
    )
    reduction_factor: float = Field(3.0, gt=1.0, description="Keep 1/reduction_factor per rung.")
    max_t: int | None = Field(None, ge=1, description="Largest budget. Default: the train budget.")
    brackets: int = Field(1, ge=1, description="ASHA brackets (1 = most aggressive).")
    min_samples_required: int = Field(3, ge=1, description="median: trials needed to compare.")
    perturbation_interval: int | None = Field(
        None, ge=1, description="pbt: budget between exploits. Default: 2 x eval_every_steps."
    )
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5, description="pbt: bottom/top share.")
    resample_probability: float = Field(
        0.25, ge=0.0, le=1.0, description="pbt: chance to resample instead of perturbing."
    )
    synchronous: bool = Field(
        False, description="pbt: exploit only when every trial reached the interval "
        "(reproducible decisions; trials wait for the slowest)."
    )


class ResourcesConfig(StrictModel):
    cpus_per_trial: float = Field(1.0, gt=0, description="Also the trial's torch threads.")
    gpus_per_trial: float = Field(
        0.0, ge=0, description="Per worker. Fractions (0.25) pack trials on one GPU; a trial's "
        "training uses one device per worker, so more GPUs means workers_per_trial > 1."
    )
    workers_per_trial: int = Field(
        1, ge=1, description="Data-parallel processes per trial, each with cpus_per_trial CPUs "
        "and gpus_per_trial GPUs; train.batch_size is per worker (global batch = batch_size x "
        "gradient_accumulation_steps x workers)."
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Where a trial's workers go: PACK on as few nodes as fit (fast "
        "all-reduce), SPREAD across nodes; STRICT_* refuse to place otherwise."
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="How workers_per_trial > 1 workers share the model. ddp: each holds "
        "the whole model, its gradients and AdamW state (least communication; the model must "
        "fit one device). fsdp: full fine-tuning with weights, gradients and AdamW state "
        "sharded over the workers (for models that do not fit one device; more communication)."
    )
    reuse_actors: bool | None = Field(
        None, description="Run the next trial in a finished trial's process (skips process "
        "start-up and library imports). Default: on, except with pbt (Tune's default, off, "
        "which is what this project's PBT tests cover) and with workers_per_trial > 1 (that "
        "process only drives Ray Train workers, which are new for every trial)."
    )


class SweepConfig(StrictModel):
    """One sweep. `sweep validate CONFIG` checks it, and the model, data and cluster it names."""

    name: str | None = Field(
        None, description="Experiment name: the experiment's folder under storage_path, so "
        "letters, digits, `.`, `_` and `-` only. Default: config name + time."
    )
    task: Task = Field(description="What the trials train: a causal LM or a classifier.")
    model: ModelConfig
    data: DataConfig
    train: TrainConfig = TrainConfig()
    lora: LoraConfig = LoraConfig()
    distill: DistillConfig | None = Field(
        None, description="Distil a teacher into the student (`model`): trials train on "
        "alpha * KL * T^2 + (1 - alpha) * CE with the teacher's soft labels, computed once."
    )
    search_space: dict[str, Dimension] = Field(
        default_factory=dict,
        description="`section.field` -> dimension; sections: train, lora, distill."
    )
    search: SearchConfig = SearchConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    metric: str = Field(
        "eval_loss", description="What selects the best trial. causal_lm: eval_loss, "
        "eval_perplexity, eval_token_accuracy, eval_exact_match (with train.generation_eval); "
        "sequence_classification: eval_loss, eval_accuracy, eval_precision, eval_recall, eval_f1 "
        "(macro), eval_precision_<label>, eval_recall_<label>, eval_f1_<label> (one class, by "
        "name or id), eval_binary_f1 (with data.positive_label). Also train_loss."
    )
    mode: Literal["min", "max"] | None = Field(None, description="Default: the metric's own.")
    num_samples: int = Field(8, ge=1, description="Trials to run (per grid point for grid).")
    resources: ResourcesConfig = ResourcesConfig()
    storage_path: str = Field(
        "~/sweep_results", description="Local/NFS folder or s3://bucket/prefix."
    )
    keep_checkpoints_per_trial: int = Field(
        2, ge=1, description="Per trial, the best N checkpoints by the metric are kept "
        "(pbt keeps all while trials run: donors' checkpoints must outlive their use)."
    )
    keep_top_k_trials: int | None = Field(
        5, ge=1, description="Experiment-wide: finished trials outside the best k lose their "
        "checkpoints as the sweep runs (null keeps all). Soups need k >= their top-k."
    )
    max_retries: int = Field(2, ge=0, description="Restarts of a failed trial from its checkpoint.")
    stall_timeout_s: float | None = Field(
        600.0, gt=0, description="When no trial runs while unfinished trials remain for this "
        "long, the sweep saves its state, names the stuck trials and stops with an error (resume "
        "it with `sweep resume`). Raise it where trials wait for an autoscaler; null waits "
        "forever."
    )
    baseline: bool = Field(True, description="Measure the untrained model's metric once.")
    logging: LoggingConfig = LoggingConfig()
    quality: QualityConfig = QualityConfig()
    base_dir: str | None = Field(
        None, description="Folder relative data/model paths are read from. Default: the config "
        "file's folder (the current folder for dict configs)."
    )

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str | None) -> str | None:
        if name is None:
            return None
        if not EXPERIMENT_NAME.fullmatch(name) or name in (".", ".."):
            raise ValueError(
                f"{name!r} cannot be a folder name under storage_path; use letters, digits, "
                "`.`, `_` and `-` (no `/`, no `..`, no spaces), starting with a letter or digit, "
                "e.g. my-sweep-1"
            )
        return name

    @field_validator("storage_path")
    @classmethod
    def _a_storage_path(cls, path: str, info: ValidationInfo) -> str:
        if stored_context(info):  # where that sweep wrote, however it was spelt
            return path
        if not path.strip():
            raise ValueError("is empty; give a folder (e.g. ~/sweep_results) or s3://bucket/prefix")
        one_slash = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]+):/([^/].*)", path)
        if one_slash:
            scheme, rest = one_slash.groups()
            raise ValueError(
                f"{path!r} has one slash after `{scheme}:`, so it would be a local folder named "
                f"{scheme + ':'!r}; write {scheme}://{rest}"
            )
        return path

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_are_defaults(cls, data: Any) -> Any:
        """`train:` with every key commented out is YAML's null: it means the defaults (and a
        required section left empty is reported as missing)."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in _SECTIONS)}
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data: Any) -> Any:
        """An unset `mode` is the metric's own direction (min for losses, max for F1)."""
        if isinstance(data, dict) and data.get("mode") is None:
            metric = data.get("metric", cls.model_fields["metric"].default)
            task = data.get("task")
            natural = (metric_mode(task, metric)
                       if isinstance(task, str) and isinstance(metric, str) else None)
            if natural is not None:
                return {**data, "mode": natural}
        return data

    @model_validator(mode="after")
    def _cross_field(self, info: ValidationInfo) -> SweepConfig:
        """Every cross-field rule runs; all broken ones are reported together, one per line.
        A stored experiment's config (`is_stored`) skips the rules that refuse a sweep as
        pointless (search start-up and generations, budgets, ignored fields): it has run."""
        problems = (self._check_metric() + self._check_search_space() + self._check_scheduler()
                    + self._check_resources())
        if not is_stored(self, info):
            problems += (self._check_evolutionary() + self._check_search()
                         + self._check_scheduler_settings() + self._check_task_fields())
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _check_metric(self) -> list[str]:
        problems = self._check_metric_options()
        natural = metric_mode(self.task, self.metric)
        if natural is None:
            known = known_metric_names(self.task)
            return problems + [
                f"metric: {self.metric!r} is never reported by the {self.task} trainable; "
                f"use one of {known}{did_you_mean(self.metric, known)}"
            ]
        optional = OPTIONAL_METRICS[self.task].get(self.metric)
        if optional is not None and _field_value(self, optional[1]) is None:
            problems.append(f"metric: {self.metric!r} is reported only when {optional[1]} is "
                            f"set; set {optional[1]} (README: Metrics) or choose another metric")
        per_class = per_class_metric(self.metric)
        if per_class is not None and self.data.label_names is not None:
            keys = metric_label_keys(self.data.label_names)
            if per_class[1] not in keys:
                problems.append(
                    f"metric: {self.metric!r} names no class of data.label_names "
                    f"{self.data.label_names}; use one of "
                    f"{[f'eval_{per_class[0]}_{k}' for k in keys]}"
                    f"{did_you_mean(per_class[1], keys)}")
        if self.mode != natural:
            better = "lower" if natural == "min" else "higher"
            problems.append(f"mode: {self.mode!r} does not fit metric {self.metric!r} ({better} "
                            f"is better); set mode: {natural}")
        return problems

    def _check_metric_options(self) -> list[str]:
        """Settings that add metrics must fit the task."""
        problems = []
        if self.task != "causal_lm" and self.train.generation_eval is not None:
            problems.append("train.generation_eval: generates text, which a "
                            f"{self.task} model does not; drop it (task is {self.task})")
        if (self.task == "causal_lm" and self.train.generation_eval is not None
                and self.data.prompt_template is None):
            problems.append("train.generation_eval: needs prompts to generate from; set "
                            "data.prompt_template (and completion_template) or drop it")
        if self.task != "sequence_classification" and self.data.positive_label is not None:
            problems.append(f"data.positive_label: {self.data.positive_label!r} is for "
                            f"classifiers, but task is {self.task}; drop it")
        return problems

    def _check_search_space(self) -> list[str]:
        problems: list[str] = []
        for key, dim in self.search_space.items():
            section, _, field = key.partition(".")
            if section not in SEARCHABLE_SECTIONS or not field:
                problems.append(
                    f"search_space.{key}: keys are `section.field` with section one of "
                    f"{sorted(SEARCHABLE_SECTIONS)}, e.g. `train.learning_rate`"
                    f"{did_you_mean(section, list(SEARCHABLE_SECTIONS))}"
                )
                continue
            model_cls = SEARCHABLE_SECTIONS[section]
            if field not in model_cls.model_fields:
                problems.append(
                    f"search_space.{key}: {section} has no field {field!r}"
                    f"{did_you_mean(field, list(model_cls.model_fields))}"
                )
                continue
            allowed = SEARCHABLE_FIELDS.get(section)
            if allowed is not None and field not in allowed:
                problems.append(
                    f"search_space.{key}: {section}.{field} is fixed for the whole sweep (the "
                    f"teacher runs once, before the trials); search {sorted(allowed)} instead, "
                    f"or set {key} in the config")
                continue
            if getattr(self, section) is None:
                problems.append(f"search_space.{key}: searches distillation, but the config has "
                                "no distill section; add one with distill.teacher")
                continue
            base = getattr(self, section).model_dump()
            for label, value in _candidate_values(dim):
                try:
                    model_cls.model_validate({**base, field: value})
                except Exception as err:  # pydantic's message names the rule broken
                    msg = _first_error_message(err)
                    problems.append(
                        f"search_space.{key}.{label}: {value!r} is not a valid {key}: {msg}"
                    )
        has_grid = any(isinstance(d, Grid) for d in self.search_space.values())
        if has_grid and self.search.algorithm in MODEL_BASED:
            problems.append(
                f"search.algorithm: {self.search.algorithm} cannot sample `type: grid` dimensions "
                "(search_space has grid); use `type: choice` with it, or search.algorithm: grid"
            )
        if self.search.algorithm == "grid":
            bad = [k for k, d in self.search_space.items() if not isinstance(d, Grid | Choice)]
            if bad:
                problems.append(
                    f"search.algorithm: grid needs discrete dimensions, but {bad} are continuous; "
                    "give them `type: grid` values, or use search.algorithm: hyperopt"
                )
        problems += self._check_points_to_evaluate()
        if self.search.algorithm in MODEL_BASED and not self.search_space:
            problems.append(
                f"search_space: is empty, so {self.search.algorithm} has nothing to search; add "
                "dimensions (e.g. train.learning_rate) or use search.algorithm: random"
            )
        return problems

    def _check_points_to_evaluate(self) -> list[str]:
        points = self.search.points_to_evaluate
        if not points:
            return []
        if self.search.algorithm == "grid":
            return ["search.points_to_evaluate: grid enumerates its own points; drop "
                    "points_to_evaluate or use search.algorithm: random, hyperopt or optuna"]
        problems: list[str] = []
        if len(points) > self.num_samples:
            problems.append(
                f"search.points_to_evaluate: {len(points)} points but num_samples is "
                f"{self.num_samples}; the extra points would never run, so set num_samples >= "
                f"{len(points)}"
            )
        for i, point in enumerate(points):
            for key, value in point.items():
                where = f"search.points_to_evaluate[{i}].{key}"
                if key not in self.search_space:
                    problems.append(
                        f"{where}: not a searched dimension; points give values for "
                        f"search_space keys {sorted(self.search_space)}"
                        f"{did_you_mean(key, list(self.search_space))}"
                    )
                    continue
                section, _, field = key.partition(".")
                model_cls = SEARCHABLE_SECTIONS[section]
                if getattr(self, section) is None:
                    continue  # reported by _check_search_space
                try:
                    model_cls.model_validate({**getattr(self, section).model_dump(), field: value})
                except Exception as err:  # pydantic's message names the rule broken
                    problems.append(f"{where}: {value!r} is not valid: "
                                    f"{_first_error_message(err)}")
        return problems

    def _check_evolutionary(self) -> list[str]:
        """population_size only means something for cmaes/nsga2, and (set or default) must leave
        trials for a second generation; CMA-ES needs a numeric dimension; nsga2 has no separate
        random start."""
        search, problems = self.search, []
        if search.population_size is not None and search.algorithm not in EVOLUTIONARY:
            problems.append(
                f"search.population_size: {search.population_size} is set, but "
                f"search.algorithm: {search.algorithm} has no generations; drop it or set "
                "search.algorithm: cmaes or nsga2")
        problems += self._check_generations()
        if search.algorithm == "cmaes" and self.search_space:
            numeric = [k for k, d in self.search_space.items() if not isinstance(d, Choice | Grid)]
            if not numeric:
                problems.append(
                    f"search.algorithm: cmaes models numeric dimensions (loguniform, uniform, "
                    f"quniform, randint), and every dimension of search_space "
                    f"({sorted(self.search_space)}) is a choice, which CMA-ES would sample at "
                    "random; use search.algorithm: nsga2 or hyperopt")
        if search.algorithm == "nsga2" and search.n_initial_points is not None:
            problems.append(
                f"search.n_initial_points: {search.n_initial_points} does not apply to nsga2, "
                "whose first generation (population_size trials) is its random start; drop it "
                "and set search.population_size instead")
        return problems

    def _check_generations(self) -> list[str]:
        """cmaes/nsga2 learn from a generation once it has finished, so the sweep needs a trial
        after the first generation (which, for cmaes, follows its start-up trials), whether the
        population is set or the default. Smaller, the sweep is silently a random search."""
        search, n = self.search, self.num_samples
        numeric = sum(not isinstance(d, Choice | Grid) for d in self.search_space.values())
        start = (search.n_initial_points or 1) if search.algorithm == "cmaes" else 0
        if search.algorithm not in EVOLUTIONARY or start >= n:  # n_initial_points' own error
            return []
        if search.population_size is not None:
            population = search.population_size
            what = f"search.population_size: {population} with num_samples: {n}"
        elif search.algorithm == "cmaes":
            if not numeric:  # refused by the caller: nothing for CMA-ES to model
                return []
            population = cmaes_population_size(numeric)
            what = (f"search.algorithm: cmaes with its default population_size, {population} "
                    f"(4 + floor(3 ln {numeric}) for {numeric} numeric dimension"
                    f"{'s' if numeric > 1 else ''}), and num_samples: {n}")
        else:
            population = nsga2_population_size(n)
            what = (f"search.algorithm: nsga2 with its default population_size, {population} "
                    f"(num_samples / 4, at least 2), and num_samples: {n}")
        if start + population < n:
            return []
        after = (f", after {start} start-up trial{'s' if start > 1 else ''} "
                 "(search.n_initial_points)," if start else "")
        rule = ("n_initial_points + population_size < num_samples" if start
                else "population_size < num_samples")
        room = n - start - 1  # the largest population that leaves one trial to learn from
        lower = (f"search.population_size: {room} or lower" if room >= 2
                 else "search.algorithm: random (too few trials to learn from)")
        return [f"{what}{after} leaves no trial for a second generation, so nothing is learnt; "
                f"`{rule}` must hold: set num_samples >= {start + 2 * population}, or "
                f"{lower}"]

    def _check_scheduler(self) -> list[str]:
        problems: list[str] = []
        s = self.scheduler
        eval_every = self.train.eval_every_steps
        if s.time_unit == "steps" and s.grace_period is not None and s.grace_period < eval_every:
            problems.append(
                f"scheduler.grace_period: {s.grace_period} steps is below train.eval_every_steps "
                f"({eval_every}); a trial can only be stopped at an evaluation, so set "
                f"grace_period >= {eval_every}"
            )
        if s.type == "pbt":
            if self.search.algorithm in MODEL_BASED:
                problems.append(
                    f"scheduler.type: pbt explores by itself and does not work with "
                    f"search.algorithm: {self.search.algorithm}; set search.algorithm: random"
                )
            shaped = [k for k in self.search_space if k in ("lora.r", "lora.target_modules")]
            if shaped:
                problems.append(
                    f"scheduler.type: pbt copies weights between trials, so it cannot perturb "
                    f"{shaped} (they change tensor shapes); fix them in `lora`"
                )
            if not self.search_space:
                problems.append("scheduler.type: pbt needs a search_space to perturb")
        return problems

    def _check_resources(self) -> list[str]:
        r = self.resources
        problems: list[str] = []
        if r.workers_per_trial > 1 and r.gpus_per_trial not in (0, 1):
            kind = "fractional" if r.gpus_per_trial < 1 else "several"
            problems.append(
                f"resources.gpus_per_trial: {r.gpus_per_trial} ({kind} GPUs per worker) does not "
                f"work with resources.workers_per_trial: {r.workers_per_trial}; each data-parallel "
                "worker drives one whole GPU (NCCL refuses two ranks on one device). Set "
                "gpus_per_trial: 1 (or 0 for CPU), or workers_per_trial: 1 to pack small trials"
            )
        if r.workers_per_trial == 1 and r.gpus_per_trial > 1 and r.gpus_per_trial.is_integer():
            n = int(r.gpus_per_trial)
            problems.append(
                f"resources.gpus_per_trial: {n} with workers_per_trial: 1 would hold {n} GPUs "
                f"and train on one (a worker drives one device). For data-parallel training set "
                f"workers_per_trial: {n} and gpus_per_trial: 1"
            )
        if r.workers_per_trial == 1 and r.gpus_per_trial > 1 and not r.gpus_per_trial.is_integer():
            problems.append(
                f"resources.gpus_per_trial: {r.gpus_per_trial}; above 1 it must be a whole number "
                "of GPUs (fractions up to 1 share a GPU); for several GPUs per trial set "
                "workers_per_trial: N and gpus_per_trial: 1"
            )
        if self.train.precision == "fp16" and r.gpus_per_trial == 0:
            problems.append("train.precision: fp16 needs a GPU but resources.gpus_per_trial is 0; "
                            "use bf16 or fp32 on CPU, or request GPUs")
        return problems + self._check_data_parallel()

    def _check_data_parallel(self) -> list[str]:
        """Data-parallel trials: no process reuse; FSDP shards full fine-tuning over two or more
        workers (README: Placement and resources)."""
        problems: list[str] = []
        if self.resources.reuse_actors and self.resources.workers_per_trial > 1:
            problems.append(
                "resources.reuse_actors: true does not work with resources.workers_per_trial > 1: "
                "a stopped data-parallel trial's process waits for its Ray Train workers to "
                "leave, longer than Tune waits before reusing it (the next trial would fail); "
                "drop reuse_actors (off by default for such trials)")
        if self.resources.strategy != "fsdp":
            return problems
        if self.resources.workers_per_trial < 2:
            problems.append(
                "resources.strategy: fsdp shards the model over a trial's workers, but "
                "resources.workers_per_trial is 1, so there is nothing to shard over; set "
                "workers_per_trial: 2 or more, or strategy: ddp")
        dim = self.search_space.get("train.finetune")
        searched = {v for _, v in _candidate_values(dim)} if dim is not None else set()
        finetunes = searched or {self.train.finetune}
        if "lora" in finetunes:
            problems.append(
                "resources.strategy: fsdp is for train.finetune: full, but the trials fine-tune "
                "with LoRA, whose trained weights and AdamW state are small and whose frozen base "
                "DDP replicates; use strategy: ddp with LoRA (or finetune: full)")
        if self.train.precision == "fp16":
            problems.append("train.precision: fp16 does not work with resources.strategy: fsdp "
                            "(it would need a sharded gradient scaler); use bf16")
        if self.train.generation_eval is not None:
            problems.append(
                "train.generation_eval does not work with resources.strategy: fsdp yet (generation "
                "runs on rank 0 alone, which a sharded model cannot); drop generation_eval or use "
                "strategy: ddp")
        return problems

    def _check_task_fields(self) -> list[str]:
        """Data settings the task's trainable would silently ignore."""
        if self.task == "sequence_classification" and self.data.prompt_template is not None:
            return [f"data.prompt_template: {self.data.prompt_template!r} is read only by "
                    "causal_lm; a sequence_classification trial reads data.text_column (and "
                    "data.label_column): drop prompt_template, or set text_column"]
        return []

    def _check_search(self) -> list[str]:
        """Start-up points, warm-start points and dimension types the searchers would trip on
        (hyperopt raises on a partial or unknown point) or silently waste trials on."""
        search, problems = self.search, []
        n = search.n_initial_points
        if n is not None and search.algorithm in ("random", "grid"):
            problems.append(
                f"search.n_initial_points: {n} is set, but search.algorithm: {search.algorithm} "
                "has no start-up phase (it never learns from results); drop it"
            )
        elif n is not None and search.algorithm in _LEARNING and n >= self.num_samples:
            problems.append(
                f"search.n_initial_points: {n} >= num_samples ({self.num_samples}), so every "
                "trial is a random start-up point and the searcher never learns from results; "
                f"lower it below {self.num_samples}, or use search.algorithm: random"
            )
        if search.algorithm in _LEARNING:
            for i, point in enumerate(search.points_to_evaluate):
                problems += self._point_problems(i, point)
        for key, dim in self.search_space.items():
            problems += _dimension_type_problems(key, dim)
        return problems

    def _point_problems(self, i: int, point: dict[str, Any]) -> list[str]:
        problems = []
        for key, value in point.items():
            dim, where = self.search_space.get(key), f"search.points_to_evaluate[{i}].{key}"
            if isinstance(dim, Choice | Grid) and value not in dim.values:
                problems.append(f"{where}: {value!r} is not one of the choice values "
                                f"{dim.values}; add it to the choice or use one of them")
            elif (isinstance(dim, _Range | RandInt) and _is_number(value)
                  and not dim.low <= value <= dim.high):
                problems.append(f"{where}: {value!r} is outside the searched range "
                                f"[{dim.low}, {dim.high}]; widen the range or fix the point")
        missing = sorted(set(self.search_space) - set(point))
        if self.search.algorithm == "hyperopt" and missing:
            problems.append(
                f"search.points_to_evaluate[{i}]: gives no value for {missing}; hyperopt needs "
                "every search_space key in each point (search.algorithm: random fills in the "
                "rest)"
            )
        return problems

    def ignored_settings(self) -> list[str]:
        """Scheduler options the chosen type never reads: a warning at load, not an error, so
        `--set scheduler.type=fifo` on a config tuned for asha runs (as the same switch does in
        Ray Tune), and not silently either. A value equal to the default is not reported."""
        s, notes = self.scheduler, []
        for name, field in SchedulerConfig.model_fields.items():
            readers = _SCHEDULER_OPTION_READERS.get(name, (s.type,))
            if s.type not in readers and getattr(s, name) != field.default:
                verb = "reads" if len(readers) == 1 else "read"
                notes.append(f"scheduler.{name}: {getattr(s, name)!r} is ignored: only "
                             f"{_and(readers)} {verb} it, and scheduler.type is {s.type}")
        return notes

    def _short_budget_fix(self) -> tuple[int | None, int | None]:
        """(eval_every_steps, grace_period) that together fit a train.max_steps shorter than
        the config was tuned for; None where the value fits already. Each budget message gives
        both, so either `--set` line it prints validates on its own."""
        every, s = self.train.eval_every_steps, self.scheduler
        budgets = self._step_budgets()
        if not budgets:
            return None, None
        budget = min(budgets)
        new_every = max(1, budget // 4) if every > budget else None
        fixed = self.train.max_steps if "train.max_steps" not in self.search_space else None
        grace_too_big = (s.type in ("asha", "median") and s.time_unit == "steps"
                         and s.grace_period is not None and fixed is not None
                         and s.grace_period > fixed)
        new_grace = min(2 * (new_every or every), budget) if grace_too_big else None
        return new_every, new_grace

    def _short_budget_sets(self) -> str:
        new_every, new_grace = self._short_budget_fix()
        sets = ([f"--set train.eval_every_steps={new_every}"] if new_every else []) + (
            [f"--set scheduler.grace_period={new_grace}"] if new_grace else [])
        return " ".join(sets)

    def _check_scheduler_settings(self) -> list[str]:
        """Budgets that leave the scheduler nothing to do."""
        s, problems = self.scheduler, []
        every, steps = self.train.eval_every_steps, s.time_unit == "steps"
        max_steps = self.train.max_steps if "train.max_steps" not in self.search_space else None
        if s.type == "asha" and s.grace_period is not None and s.max_t is not None \
                and s.grace_period > s.max_t:
            problems.append(
                f"scheduler.grace_period: {s.grace_period} is above scheduler.max_t ({s.max_t}), "
                "so no trial could be stopped before it reaches max_t; set grace_period <= max_t"
            )
        if s.type in ("asha", "median") and steps and s.grace_period is not None \
                and max_steps is not None and s.grace_period > max_steps:
            problems.append(
                f"scheduler.grace_period: {s.grace_period} steps is above train.max_steps "
                f"({max_steps}), so {s.type} can never stop a trial; set grace_period <= "
                f"{max_steps} ({self._short_budget_sets()}), or stop no trial early (--set "
                "scheduler.type=fifo)"
            )
        if s.type in ("asha", "hyperband") and steps and s.max_t is not None and s.max_t < every:
            problems.append(
                f"scheduler.max_t: {s.max_t} steps is below train.eval_every_steps ({every}), so "
                "every trial would be stopped at its first evaluation; raise max_t, or leave it "
                "unset (the train budget)"
            )
        if s.type == "pbt" and steps and s.perturbation_interval is not None \
                and s.perturbation_interval < every:
            problems.append(
                f"scheduler.perturbation_interval: {s.perturbation_interval} steps is below "
                f"train.eval_every_steps ({every}); pbt can only exploit at an evaluation, so set "
                f"perturbation_interval >= {every}"
            )
        trials = self.num_samples * self._grid_points()
        if s.type == "median" and s.min_samples_required > trials:
            problems.append(
                f"scheduler.min_samples_required: {s.min_samples_required} is above the "
                f"{trials} trials of the sweep (num_samples ({self.num_samples}) x grid points), "
                f"so the median rule never has enough trials to stop one; set it <= {trials} or "
                "raise num_samples"
            )
        if s.type == "pbt" and trials < 2:
            problems.append(
                f"num_samples: {self.num_samples} with scheduler.type: pbt; a population of one "
                "has no other trial to copy from, so pbt would do nothing; set num_samples >= 2 "
                "(4 or more is typical)"
            )
        if s.type != "fifo":
            problems += self._check_eval_interval()
        return problems

    def _step_budgets(self) -> list[Any]:
        """train.max_steps, or its searched candidates (low and high of a range)."""
        dim, fixed = self.search_space.get("train.max_steps"), self.train.max_steps
        return ([v for _, v in _candidate_values(dim) if _is_number(v)] if dim is not None
                else [fixed] if fixed is not None else [])

    def _check_eval_interval(self) -> list[str]:
        """A trial reports (and can be stopped) at evaluations: a budget below one interval
        leaves it a single report, at its end, and the scheduler nothing to compare."""
        every, budgets = self.train.eval_every_steps, self._step_budgets()
        if not budgets or min(budgets) >= every:
            return []
        which = ("train.max_steps" if "train.max_steps" not in self.search_space
                 else "the smallest train.max_steps in search_space")
        return [f"train.eval_every_steps: {every} is above {which} ({min(budgets)}), so a trial "
                f"evaluates only once, at its end, and scheduler.type: {self.scheduler.type} has "
                f"nothing to compare before that; set eval_every_steps <= {min(budgets)} "
                f"({self._short_budget_sets()}), or stop no trial early (--set "
                "scheduler.type=fifo)"]

    def _grid_points(self) -> int:
        grid = self.search.algorithm == "grid"
        return math.prod(len(d.values) for d in self.search_space.values()
                         if isinstance(d, Grid) or (grid and isinstance(d, Choice)))

    @property
    def resolved_mode(self) -> str:
        assert self.mode is not None
        return self.mode


_SECTIONS = ("model", "data", "train", "lora", "search_space", "search", "scheduler",
             "resources", "logging", "quality")
_LEARNING = ("hyperopt", "optuna", "cmaes", "nsga2")  # searchers that learn from results
# Which scheduler types read each option (`type` and options read by every type: absent).
_SCHEDULER_OPTION_READERS: dict[str, tuple[str, ...]] = {
    "time_unit": ("asha", "hyperband", "median", "pbt"),
    "grace_period": ("asha", "median", "pbt"),  # pbt: the default perturbation_interval
    "reduction_factor": ("asha", "hyperband"),
    "max_t": ("asha", "hyperband"),
    "brackets": ("asha",),
    "min_samples_required": ("median",),
    "perturbation_interval": ("pbt",),
    "quantile_fraction": ("pbt",),
    "resample_probability": ("pbt",),
    "synchronous": ("pbt",),
}


def _and(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _dimension_type_problems(key: str, dim: Any) -> list[str]:
    """Continuous dimensions on whole-number fields (a sampled 7.3 fails the trial), and a
    quniform step wider than its range (every sample rounds to the same one or two values)."""
    problems = []
    if isinstance(dim, QUniform) and dim.q > dim.high - dim.low:
        problems.append(
            f"search_space.{key}.q: {dim.q} is larger than the range (high - low = "
            f"{dim.high - dim.low:g}), so samples round to at most two values; use a smaller q"
        )
    section, _, name = key.partition(".")
    field = SEARCHABLE_SECTIONS[section].model_fields.get(name) \
        if section in SEARCHABLE_SECTIONS else None
    kinds = set(typing.get_args(field.annotation) or (field.annotation,)) - {type(None)} \
        if field is not None else set()
    if kinds != {int}:
        return problems
    low, high = math.ceil(getattr(dim, "low", 0)), math.floor(getattr(dim, "high", 0))
    if isinstance(dim, LogUniform | Uniform):
        problems.append(
            f"search_space.{key}: {dim.type} samples fractional values, but {key} takes whole "
            f"numbers; use {{type: randint, low: {low}, high: {high}}} or "
            "{type: choice, values: [...]}"
        )
    elif isinstance(dim, QUniform) and not float(dim.q).is_integer():
        problems.append(
            f"search_space.{key}: quniform with q={dim.q} samples fractional values, but {key} "
            "takes whole numbers; use a whole q (q: 1), or randint"
        )
    return problems


def _field_value(config: SweepConfig, dotted: str) -> Any:
    """`data.positive_label` -> config.data.positive_label."""
    section, _, name = dotted.partition(".")
    return getattr(getattr(config, section), name)


def _candidate_values(dim: Any) -> list[tuple[str, Any]]:
    if isinstance(dim, Choice | Grid):
        return [(f"values[{i}]", v) for i, v in enumerate(dim.values)]
    return [("low", dim.low), ("high", dim.high)]


def _first_error_message(err: Exception) -> str:
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", err)).removeprefix("Value error, ")
    return str(err)
