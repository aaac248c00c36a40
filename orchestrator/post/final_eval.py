"""Test-set evaluation after the sweep: the best trials, scored once on `data.test`.

Validation chose the trials; the test split never took part in that choice, so its numbers are
an unbiased estimate of how the chosen model does on new data. Validation figures are the ones
each trial reported with its checkpoint (`metrics.json`); test figures are measured here, once,
and written to `test_results.json` in the experiment (local folder or object storage).

>>> from orchestrator.post.final_eval import evaluate_test_split
>>> report = evaluate_test_split("~/sweep_results/quickstart", top_k=3)  # doctest: +SKIP
>>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from orchestrator.config.errors import ConfigError
from orchestrator.config.schema import SweepConfig
from orchestrator.experiment.checkpoints import load_checkpoint_model
from orchestrator.experiment.layout import TEST_RESULTS_FILE
from orchestrator.experiment.storage import open_storage
from orchestrator.experiment.trials import as_result, ranked_checkpoints, require_config
from orchestrator.post.errors import UnsupportedRequestError
from trainables import modeling
from trainables.checkpointing import METRICS_FILE
from trainables.config import TextLabelFiles
from trainables.data import DataError, PreparedData, prepare_data
from trainables.evaluation import evaluate
from trainables.generation import generation_metrics

if TYPE_CHECKING:
    from orchestrator.experiment.results import SweepResult


@dataclass
class EvalData:
    """The tokenized validation and test splits of a sweep, and how to batch them."""

    config: SweepConfig
    data: PreparedData  # validation and test only: scoring never needs train tokenized
    pad_id: int
    tokenizer: Any = None  # decodes train.generation_eval's completions

    @property
    def has_test(self) -> bool:
        return bool(self.data.test)

    def evaluate(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        """`split` is "validation" or "test"; test metrics are renamed `test_*`."""
        examples = self.data.validation if split == "validation" else self.data.test
        batch_size = self.config.train.eval_batch_size or self.config.train.batch_size
        device = next(model.parameters()).device
        metrics = evaluate(
            model, examples, task=self.config.task, batch_size=batch_size,
            pad_id=self.pad_id, device=device, num_labels=self.data.num_labels,
            label_names=self.data.label_names, positive_label_id=self.data.positive_label_id,
        )
        generation = self.config.train.generation_eval
        if generation is not None and self.tokenizer is not None:
            samples = (self.data.generation_validation if split == "validation"
                       else self.data.generation_test)
            metrics |= generation_metrics(model, samples, self.tokenizer, generation,
                                          batch_size=batch_size, device=device)
        return metrics if split == "validation" else {to_test_name(k): v
                                                      for k, v in metrics.items()}


def to_test_name(metric: str) -> str:
    """`eval_loss` -> `test_loss`: the same metric, measured on the test split."""
    return "test_" + metric.removeprefix("eval_")


def side_by_side(validation: dict[str, float], test: dict[str, float] | None) -> dict[str, Any]:
    """Each validation metric followed by its test counterpart (when there is a test split)."""
    row: dict[str, Any] = {}
    for name, value in validation.items():
        row[name] = value
        if test is not None:
            row[to_test_name(name)] = test.get(to_test_name(name))
    return row


def load_eval_data(config: SweepConfig, test_data: str | None = None) -> EvalData:
    """Read and tokenize the sweep's splits as the sweep did (the data checks of new sweeps
    are not re-run on them: `prepare_data(stored=True)`); `test_data` replaces data.test."""
    from orchestrator.run.preflight import check_model

    config = config.model_copy(deep=True)
    if test_data is not None:
        test = os.path.abspath(os.path.expanduser(test_data))
        _not_a_sweep_split(config, test_data, test)
        # A copy, not an assignment: that would re-run DataConfig's checks of new sweeps.
        config = config.model_copy(update={"data": config.data.model_copy(update={"test": test})})
    problems = check_model(config)
    if problems:
        raise ConfigError(problems, "sweep")
    tokenizer = modeling.load_tokenizer(config.model)
    try:
        data = prepare_data(config.data, config.task, tokenizer, Path(config.base_dir or "."),
                            tokenize=("validation", "test"),
                            generation=config.train.generation_eval, stored=True)
    except DataError as err:
        raise ConfigError([str(err)], "sweep") from None
    return EvalData(config=config, data=data, pad_id=int(tokenizer.pad_token_id),
                    tokenizer=tokenizer)


def _not_a_sweep_split(config: SweepConfig, given: str, test: str) -> None:
    """The test file given (`--test`, test_data=) must not be one the sweep trained or
    selected on."""
    base = Path(config.base_dir or ".")
    for name in ("train", "validation"):
        source = getattr(config.data, name)
        text = source.text if isinstance(source, TextLabelFiles) else source
        if config.data.hub_dataset is not None or not isinstance(text, str):
            continue
        path = base / os.path.expanduser(text)
        same = (os.path.samefile(path, test) if path.exists() and os.path.exists(test)
                else os.path.normpath(path.absolute()) == os.path.normpath(test))
        if same:
            use = "selected the trials" if name == "validation" else "trained on"
            raise ConfigError([
                f"--test / test_data: {given!r} is the sweep's data.{name} ({str(path)!r}), "
                f"which it {use}, so its score would be no test score; give a held-out file"],
                "sweep")


@dataclass
class EvaluationReport:
    """Validation (as reported) and test (measured here) metrics of the top-k trials."""

    experiment_path: str
    metric: str
    mode: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # best first
    test_examples: int = 0

    def table(self) -> pd.DataFrame:
        """One row per trial, each validation metric next to its test counterpart."""
        return pd.DataFrame([
            {"rank": row["rank"], "trial_id": row["trial_id"], "step": row["step"],
             **side_by_side(row["validation"], row["test"])} for row in self.rows
        ])

    def to_json(self) -> str:
        return json.dumps({
            "experiment": self.experiment_path, "metric": self.metric, "mode": self.mode,
            "test_examples": self.test_examples,
            "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "trials": self.rows,
        }, indent=2)

    def summary(self) -> str:
        with pd.option_context("display.max_columns", None, "display.width", 200,
                               "display.float_format", "{:.4f}".format):
            table = self.table().to_string(index=False)
        return (f"Validation (eval_*) selected these trials by {self.metric} ({self.mode}); the "
                f"test split ({self.test_examples} examples, test_*) took no part in it.\n"
                f"{table}")


def evaluate_test_split(
    result_or_path: SweepResult | str | Path,
    top_k: int = 1,
    *,
    test_data: str | None = None,
    write: bool = True,
) -> EvaluationReport:
    """Evaluate the best trial and the rest of the top-k on the test split, once each.

    Writes `test_results.json` into the experiment unless `write=False`. `test_data` names a
    test file to use when the sweep config has no `data.test` (or to replace it).
    """
    result = as_result(result_or_path)
    config = require_config(result)
    if config.data.test is None and test_data is None:
        raise UnsupportedRequestError(
            f"{result.experiment_path}: the sweep config has no data.test; pass a test file "
            "(`sweep evaluate EXPERIMENT --test FILE`, or test_data=...) in the format of "
            "data.train"
        )
    chosen = ranked_checkpoints(result, top_k)
    data = load_eval_data(config, test_data)
    report = EvaluationReport(result.experiment_path, result.metric, result.mode,
                              test_examples=len(data.data.test))
    with tempfile.TemporaryDirectory(prefix="sweep-test-") as scratch:
        for trial in chosen:
            checkpoint = trial.local(scratch)
            reported = json.loads((checkpoint / METRICS_FILE).read_text())
            model, _ = load_checkpoint_model(data.config, checkpoint)
            report.rows.append({
                "rank": trial.rank, "trial_id": trial.trial_id, "checkpoint": trial.uri,
                "step": reported.get("step"), "trial_config": trial.trial_config,
                "validation": {k: v for k, v in reported.items() if k.startswith("eval_")},
                "test": data.evaluate(model, "test"),
            })
            del model
    if write:
        open_storage(result.experiment_path).write_text(report.to_json(), TEST_RESULTS_FILE)
    return report
