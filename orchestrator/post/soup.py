"""Model soups: one model from the top-k trials of a sweep, scored against the best single trial.

    uniform  W = W0 + sum_i delta_W_i / k                       (Wortsman et al. 2022)
    greedy   the same over a subset: ingredients in order of validation metric, starting with
             the best; the next one stays only if the soup's validation metric improves
             (strictly: the paper also keeps equal scores), so it never ends worse than the best
    ties     W = W0 + TIES(delta_W_1, ..., delta_W_k)           (Yadav et al. 2023)
    slerp    W = W0 + slerp(t; delta_W_a, delta_W_b) of two trials (the top 2, or `trials`);
             a list of t values is scored on validation and the best kept
             (`orchestrator.post.slerp`: the formula, full fine-tuning, heads)

delta_W_i = scale_i * B_i @ A_i is trial i's exact LoRA update (ranks may differ); how updates
are combined, and why not with peft's `add_weighted_adapter`, is in `orchestrator.post.merging`.
Classifier heads and other modules_to_save are averaged with the soup weights (uniformly for
ties, linearly by t for slerp). Full fine-tuning sweeps: uniform and greedy average the full
weights, slerp interpolates their task vectors (weights - base); ties needs LoRA.
The soup and the best single trial are both measured here, merged, on validation and test.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from orchestrator.config.schema import SweepConfig
from orchestrator.experiment.checkpoints import is_lora_checkpoint
from orchestrator.experiment.trials import (
    as_result,
    find_trial,
    ranked_checkpoints,
    require_config,
)
from orchestrator.post import export
from orchestrator.post.errors import UnsupportedRequestError
from orchestrator.post.final_eval import EvalData, load_eval_data, side_by_side
from orchestrator.post.merging import Pot, load_pot
from orchestrator.post.slerp import SlerpPot, search_t
from trainables import modeling
from trainables.config import is_better

if TYPE_CHECKING:
    from orchestrator.experiment.results import SweepResult

METHODS = ("uniform", "greedy", "ties", "slerp")


@dataclass
class SoupResult:
    """The soup's metrics next to the best single trial's, measured the same way."""

    method: str
    experiment_path: str
    metric: str
    mode: str
    ingredients: list[str]  # trial ids considered, best first
    weights: list[float]  # one per ingredient; 0 = left out (greedy)
    validation: dict[str, float]
    test: dict[str, float] | None
    best_single: dict[str, Any]  # trial_id, validation, test
    greedy_steps: list[dict[str, Any]] = field(default_factory=list)
    density: float | None = None
    t: float | None = None  # slerp: the interpolation factor kept (0: first trial, 1: second)
    slerp_steps: list[dict[str, Any]] = field(default_factory=list)  # one per t tried
    out: Path | None = None
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)

    @property
    def members(self) -> list[str]:
        return [t for t, w in zip(self.ingredients, self.weights, strict=True) if w]

    def table(self) -> pd.DataFrame:
        """Best single trial and soup, each validation metric next to its test counterpart."""
        single = self.best_single
        return pd.DataFrame.from_dict({
            f"best single ({single['trial_id']})": side_by_side(single["validation"],
                                                                single["test"]),
            (f"soup (slerp t={self.t:g})" if self.t is not None else
             f"soup ({self.method}, {len(self.members)} of {len(self.ingredients)})"):
                side_by_side(self.validation, self.test),
        }, orient="index")

    def summary(self) -> str:
        with pd.option_context("display.max_columns", None, "display.width", 200,
                               "display.float_format", "{:.4f}".format):
            table = self.table().to_string()
        weights = ", ".join(f"{t}={w:.3g}" for t, w in zip(self.ingredients, self.weights,
                                                           strict=True))
        lines = [f"Soup ({self.method}) of the top {len(self.ingredients)} trials by "
                 f"{self.metric} ({self.mode}): {weights}", table]
        if self.t is not None:
            first, second = self.ingredients
            lines[0] = (f"SLERP of {first} (t=0) and {second} (t=1) at t={self.t:g}, chosen by "
                        f"validation {self.metric} ({self.mode})")
        for step in self.slerp_steps if len(self.slerp_steps) > 1 else []:
            lines.append(f"  slerp: t={step['t']:g} {self.metric}={step[self.metric]:.4f}"
                         f"{' -> kept' if step['kept'] else ''}")
        for step in self.greedy_steps[1:]:
            lines.append(f"  greedy: with {step['trial_id']} {self.metric}="
                         f"{step[self.metric]:.4f} -> {'kept' if step['kept'] else 'left out'}")
        if self.test is None:
            lines.append("(no test split: set data.test or pass --test FILE for test metrics)")
        if self.out is not None:
            lines.append(f"Exported to: {self.out}")
        return "\n".join(lines)


def _uniform(members: list[int], k: int) -> list[float]:
    return [1.0 / len(members) if i in members else 0.0 for i in range(k)]


def _greedy(pot: Pot, data: EvalData, metric: str, mode: str, start: dict[str, float]
            ) -> tuple[list[float], dict[str, float], list[dict[str, Any]]]:
    """Wortsman et al.'s greedy soup: add the next-best ingredient only if validation improves."""
    k = len(pot.ingredients)
    members, current = [0], start
    steps = [{"trial_id": pot.ingredients[0].trial_id, "kept": True, metric: start[metric]}]
    for i in range(1, k):
        pot.mix(_uniform([*members, i], k))
        metrics = data.evaluate(pot.model, "validation")
        kept = is_better(metrics[metric], current[metric], mode)
        steps.append({"trial_id": pot.ingredients[i].trial_id, "kept": kept,
                      metric: metrics[metric]})
        if kept:
            members, current = [*members, i], metrics
    weights = _uniform(members, k)
    pot.mix(weights)
    return weights, current, steps


def make_soup(
    experiment: SweepResult | str | Path,
    top_k: int | None = None,
    method: str = "uniform",
    *,
    out: str | Path | None = None,
    density: float = 0.2,
    t: float | Sequence[float] | None = None,
    trials: Sequence[str] | None = None,
    test_data: str | None = None,
    overwrite: bool = False,
) -> SoupResult:
    """Combine the top-k trials of `experiment` (path, s3:// URI or SweepResult) into one model.

    `top_k`: default 3 (slerp: 2, the only value it takes).
    `density` (ties only): the share of each update's entries kept (the TIES paper uses 0.2).
    `t` (slerp only): the interpolation factor in [0, 1] (0: the first trial, 1: the second;
    default 0.5), or several, each scored on validation, the best kept. `trials` (slerp only):
    the two trial ids to interpolate instead of the top 2, in that order.
    `out`: export the soup there, in the layout of `export_best(..., merge=True)`.

    >>> soup = make_soup("~/sweep_results/quickstart", 3, "greedy")  # doctest: +SKIP
    >>> soup = make_soup("~/sweep_results/quickstart", method="slerp",
    ...                  t=[0.25, 0.5, 0.75])  # doctest: +SKIP
    >>> print(soup.summary())  # doctest: +SKIP
    """
    if method not in METHODS:
        raise UnsupportedRequestError(f"method must be one of {list(METHODS)}, but got {method!r}")
    ts = _check_slerp_request(method, top_k, t, trials)
    if top_k is None:
        top_k = 2 if method == "slerp" else 3
    if top_k < 2:
        raise UnsupportedRequestError(f"a soup needs top_k >= 2 ingredients, but got "
                                      f"top_k={top_k}; `sweep export` exports the single best "
                                      "trial")
    if not 0.0 < density <= 1.0:
        raise UnsupportedRequestError(f"`0 < density <= 1` must hold, but got density={density}")
    result = as_result(experiment)
    config = require_config(result)
    chosen = ([find_trial(result, trial_id) for trial_id in trials] if trials
              else ranked_checkpoints(result, top_k))
    folder = export.prepare_out_dir(out, overwrite) if out is not None else None
    data = load_eval_data(config, test_data)
    searched = method == "greedy" or len(ts) > 1
    if searched and not result.metric.startswith("eval_"):
        what = "greedy soups compare" if method == "greedy" else "several slerp t values compare"
        raise UnsupportedRequestError(f"{what} validation metrics, and the sweep metric "
                                      f"{result.metric!r} is not one; use --method uniform or "
                                      "ties, or one slerp --t")
    with tempfile.TemporaryDirectory(prefix="sweep-soup-") as scratch:
        local = [c.local(scratch) for c in chosen]
        lora = is_lora_checkpoint(local[0])
        if method == "ties" and not lora:
            raise UnsupportedRequestError(
                "ties merges LoRA updates, and this is a full fine-tuning sweep; use --method "
                "uniform, greedy or slerp")
        pot = load_pot(data.config, local, [c.trial_id for c in chosen])
    pair = SlerpPot.of(pot, lora) if method == "slerp" else None  # before the pot is mixed
    k = len(chosen)
    single = min(range(k), key=lambda i: chosen[i].rank)  # the better-ranked of the ingredients
    pot.mix(_uniform([single], k))  # the best trial alone, merged: measured like the soup
    single_val = data.evaluate(pot.model, "validation")
    single_test = data.evaluate(pot.model, "test") if data.has_test else None
    steps: list[dict[str, Any]] = []
    slerp_steps: list[dict[str, Any]] = []
    kept_t: float | None = None
    if method == "greedy":
        weights, soup_val, steps = _greedy(pot, data, result.metric, result.mode, single_val)
    elif pair is not None:
        kept_t, soup_val, slerp_steps = search_t(
            pair, ts, lambda: data.evaluate(pot.model, "validation"),
            lambda new, old: is_better(new[result.metric], old[result.metric], result.mode))
        slerp_steps = [{"t": step["t"], result.metric: step["validation"][result.metric],
                        **{key: value for key, value in step.items()
                           if key not in ("t", "validation")}}
                       for step in slerp_steps]
        weights = [1.0 - kept_t, kept_t]
    else:
        weights = [1.0] * k if method == "ties" else _uniform(list(range(k)), k)
        pot.mix(weights, ties_density=density if method == "ties" else None)
        soup_val = data.evaluate(pot.model, "validation")
    soup = SoupResult(
        method=method, experiment_path=result.experiment_path, metric=result.metric,
        mode=result.mode, ingredients=[c.trial_id for c in chosen], weights=weights,
        validation=soup_val, test=data.evaluate(pot.model, "test") if data.has_test else None,
        best_single={"trial_id": chosen[single].trial_id, "validation": single_val,
                     "test": single_test},
        greedy_steps=steps, density=density if method == "ties" else None, t=kept_t,
        slerp_steps=slerp_steps, out=folder,
        model=pot.model, tokenizer=modeling.load_tokenizer(data.config.model),
    )
    if folder is not None:
        _export(soup, config, folder)
    return soup


def _check_slerp_request(method: str, top_k: int | None, t: float | Sequence[float] | None,
                         trials: Sequence[str] | None) -> list[float]:
    """The t values to try; `trials` and `t` are slerp's, and slerp takes exactly two trials."""
    if method != "slerp":
        for name, value in (("--trials", trials), ("--t", t)):
            if value is not None:
                raise UnsupportedRequestError(
                    f"{name} is an option of --method slerp, and {method} soups do not take "
                    f"it (they combine the best --top-k trials); drop {name} or use --method "
                    "slerp")
        return []
    ts = ([0.5] if t is None else [float(t)] if isinstance(t, int | float)
          else [float(v) for v in t])
    if trials is not None:
        if top_k is not None:
            raise UnsupportedRequestError("give --trials A,B or --top-k, not both: slerp takes "
                                          "the two trials named, or the sweep's top 2")
        if len(trials) != 2 or trials[0] == trials[1]:
            raise UnsupportedRequestError(f"slerp interpolates two different trials, but got "
                                          f"--trials {','.join(trials)}; give two ids, e.g. "
                                          "--trials TRIAL_A,TRIAL_B (`sweep results` lists them)")
    elif top_k not in (None, 2):
        raise UnsupportedRequestError(f"slerp interpolates two trials, but got top_k={top_k}; "
                                      "drop --top-k (the top 2) or name them with --trials A,B")
    bad = [v for v in ts if not 0.0 <= v <= 1.0]
    if not ts or bad or len(set(ts)) != len(ts):
        raise UnsupportedRequestError(
            f"slerp --t takes distinct values in [0, 1] (0: the first trial, 1: the second), "
            f"but got {ts}; e.g. --t 0.5 or --t 0.25,0.5,0.75")
    return ts


def _export(soup: SoupResult, config: SweepConfig, folder: Path) -> None:
    export.save_merged(soup.model, soup.tokenizer, folder)
    export.write_model_card(folder, {
        "title": f"Soup ({soup.method}) of {', '.join(soup.members)} from "
                 f"{soup.experiment_path}",
        "experiment": soup.experiment_path, "task": config.task, "layout": "merged",
        "base_model": export.base_model_info(config),
        "metric": {"name": soup.metric, "mode": soup.mode,
                   "value": soup.validation.get(soup.metric)},
        "soup": {"method": soup.method, "ingredients": soup.ingredients,
                 "weights": soup.weights, "density": soup.density,
                 "greedy_steps": soup.greedy_steps, "t": soup.t,
                 "slerp_steps": soup.slerp_steps},
        "validation_metrics": soup.validation, "test_metrics": soup.test,
        "best_single": soup.best_single,
    })
