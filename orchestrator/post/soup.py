"""Model soups: one model from the top-k trials of a sweep, scored against the best single trial.

    uniform  W = W0 + sum_i delta_W_i / k                       (Wortsman et al. 2022)
    greedy   the same over a subset: ingredients in order of validation metric, starting with
             the best; the next one stays only if the soup's validation metric improves
             (strictly: the paper also keeps equal scores), so it never ends worse than the best
    ties     W = W0 + TIES(delta_W_1, ..., delta_W_k)           (Yadav et al. 2023)

delta_W_i = scale_i * B_i @ A_i is trial i's exact LoRA update (ranks may differ); how updates
are combined, and why not with peft's `add_weighted_adapter`, is in `orchestrator.post.merging`.
Classifier heads and other modules_to_save are averaged with the soup weights (uniformly for
ties). Full fine-tuning sweeps: uniform and greedy average the full weights; ties needs LoRA.
The soup and the best single trial are both measured here, merged, on validation and test.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from orchestrator.config.schema import SweepConfig
from orchestrator.experiment.checkpoints import is_lora_checkpoint
from orchestrator.experiment.trials import as_result, ranked_checkpoints, require_config
from orchestrator.post import export
from orchestrator.post.errors import UnsupportedRequestError
from orchestrator.post.final_eval import EvalData, load_eval_data, side_by_side
from orchestrator.post.merging import Pot, load_pot
from trainables import modeling
from trainables.config import is_better

if TYPE_CHECKING:
    from orchestrator.experiment.results import SweepResult

METHODS = ("uniform", "greedy", "ties")


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
            f"soup ({self.method}, {len(self.members)} of {len(self.ingredients)})":
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
    top_k: int = 3,
    method: str = "uniform",
    *,
    out: str | Path | None = None,
    density: float = 0.2,
    test_data: str | None = None,
    overwrite: bool = False,
) -> SoupResult:
    """Combine the top-k trials of `experiment` (path, s3:// URI or SweepResult) into one model.

    `density` (ties only): the share of each update's entries kept (the TIES paper uses 0.2).
    `out`: export the soup there, in the layout of `export_best(..., merge=True)`.

    >>> soup = make_soup("~/sweep_results/quickstart", 3, "greedy")  # doctest: +SKIP
    >>> print(soup.summary())  # doctest: +SKIP
    """
    if method not in METHODS:
        raise UnsupportedRequestError(f"method must be one of {list(METHODS)}, but got {method!r}")
    if top_k < 2:
        raise UnsupportedRequestError(f"a soup needs top_k >= 2 ingredients, but got "
                                      f"top_k={top_k}; `sweep export` exports the single best "
                                      "trial")
    if not 0.0 < density <= 1.0:
        raise UnsupportedRequestError(f"`0 < density <= 1` must hold, but got density={density}")
    result = as_result(experiment)
    config = require_config(result)
    chosen = ranked_checkpoints(result, top_k)
    folder = export.prepare_out_dir(out, overwrite) if out is not None else None
    data = load_eval_data(config, test_data)
    if method == "greedy" and not result.metric.startswith("eval_"):
        raise UnsupportedRequestError(f"greedy soups compare validation metrics, and the sweep "
                                      f"metric {result.metric!r} is not one; use --method "
                                      "uniform or ties")
    with tempfile.TemporaryDirectory(prefix="sweep-soup-") as scratch:
        local = [c.local(scratch) for c in chosen]
        if method == "ties" and not is_lora_checkpoint(local[0]):
            raise UnsupportedRequestError(
                "ties merges LoRA updates, and this is a full fine-tuning sweep; use --method "
                "uniform or greedy (they average the full weights)")
        pot = load_pot(data.config, local, [c.trial_id for c in chosen])
    k = len(chosen)
    pot.mix(_uniform([0], k))  # the best trial alone, merged: measured like the soup
    single_val = data.evaluate(pot.model, "validation")
    single_test = data.evaluate(pot.model, "test") if data.has_test else None
    steps: list[dict[str, Any]] = []
    if method == "greedy":
        weights, soup_val, steps = _greedy(pot, data, result.metric, result.mode, single_val)
    else:
        weights = [1.0] * k if method == "ties" else _uniform(list(range(k)), k)
        pot.mix(weights, ties_density=density if method == "ties" else None)
        soup_val = data.evaluate(pot.model, "validation")
    soup = SoupResult(
        method=method, experiment_path=result.experiment_path, metric=result.metric,
        mode=result.mode, ingredients=[c.trial_id for c in chosen], weights=weights,
        validation=soup_val, test=data.evaluate(pot.model, "test") if data.has_test else None,
        best_single={"trial_id": chosen[0].trial_id, "validation": single_val,
                     "test": single_test},
        greedy_steps=steps, density=density if method == "ties" else None, out=folder,
        model=pot.model, tokenizer=modeling.load_tokenizer(data.config.model),
    )
    if folder is not None:
        _export(soup, config, folder)
    return soup


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
                 "greedy_steps": soup.greedy_steps},
        "validation_metrics": soup.validation, "test_metrics": soup.test,
        "best_single": soup.best_single,
    })
