"""Batching and evaluation metrics shared by both trainables."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from trainables.config import Task
from trainables.data import IGNORE_INDEX
from trainables.metrics import classification_metrics, metric_label_keys


def collate(examples: Sequence[dict[str, Any]], pad_id: int, task: Task) -> dict[str, torch.Tensor]:
    """Right-pad a micro-batch; padded positions are masked from attention and loss."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        mask[i, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if task == "causal_lm":
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        for i, e in enumerate(examples):
            labels[i, : len(e["labels"])] = torch.tensor(e["labels"])
        batch["labels"] = labels
    else:
        batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.long)
    return batch


def batches(
    examples: Sequence[dict[str, Any]], batch_size: int, pad_id: int, task: Task
) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(examples), batch_size):
        yield collate(examples[start : start + batch_size], pad_id, task)


def macro_f1(preds: Sequence[int], labels: Sequence[int], num_labels: int) -> float:
    """Unweighted mean of per-class F1 over every class; a class never predicted nor present
    scores 0 (scikit-learn's `f1_score(average="macro", zero_division=0)`)."""
    from sklearn.metrics import f1_score

    return float(f1_score(labels, preds, labels=list(range(num_labels)), average="macro",
                          zero_division=0))


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    examples: Sequence[dict[str, Any]],
    *,
    task: Task,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    num_labels: int | None = None,
    autocast: Any = None,
    label_names: Sequence[str] | None = None,
    positive_label_id: int | None = None,
) -> dict[str, float]:
    """Metrics on a held-out split, keyed as the trainables report them (`eval_*`).

    Classification: `label_names` (in id order, default the ids) name the per-class metrics;
    `positive_label_id` adds that class's F1 as `eval_binary_f1` (see `trainables.metrics`).
    """
    was_training = model.training
    model.eval()
    example_losses: list[float] = []  # summed over each example's loss items
    example_items: list[int] = []  # loss items per example: completion tokens, or 1 label
    correct = 0
    preds: list[int] = []
    labels: list[int] = []
    for batch in batches(examples, batch_size, pad_id, task):
        batch = _to(batch, device)
        with autocast() if autocast else contextlib.nullcontext():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[
                "logits"
            ].float()
        if task == "causal_lm":
            # Sum of per-token losses, so the mean is over all completion tokens of the split.
            shift_logits, shift_labels = logits[:, :-1], batch["labels"][:, 1:]
            valid = shift_labels != IGNORE_INDEX
            token_losses = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)),
                shift_labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="none",
            ).view(shift_labels.shape)
            example_losses.extend(token_losses.sum(-1).tolist())
            example_items.extend(valid.sum(-1).tolist())
            correct += int(((shift_logits.argmax(-1) == shift_labels) & valid).sum())
        else:
            example_losses.extend(torch.nn.functional.cross_entropy(
                logits, batch["labels"], reduction="none").tolist())
            example_items.extend([1] * len(batch["labels"]))
            preds.extend(logits.argmax(-1).tolist())
            labels.extend(batch["labels"].tolist())
    if was_training:
        model.train()
    n_items = sum(example_items)
    loss = sum(example_losses) / max(n_items, 1)
    noise = {"eval_loss_se": loss_standard_error(example_losses, example_items),
             "eval_examples": len(examples)}
    if task == "causal_lm":
        return {
            "eval_loss": loss,
            "eval_perplexity": math.exp(min(loss, 50.0)),
            "eval_token_accuracy": correct / max(n_items, 1),
            **noise,
        }
    assert num_labels is not None
    names = list(label_names) if label_names is not None else [str(i) for i in range(num_labels)]
    return {
        "eval_loss": loss,
        **classification_metrics(preds, labels, metric_label_keys(names), positive_label_id),
        **noise,
    }


def loss_standard_error(example_losses: Sequence[float], example_items: Sequence[int]) -> float:
    """Standard error of the mean loss over items (tokens or labels), clustered by example.

    The mean is a ratio, sum(L_i) / sum(n_i), over examples i with summed loss L_i on n_i items;
    its delta-method standard error treats examples, not tokens, as the independent draws
    (a completion's tokens are not independent of each other):
    sqrt(m / (m - 1) * sum((L_i - mean * n_i)^2)) / sum(n_i), for m examples. It says how much
    eval_loss would move on another validation set of the same size, which is the noise the
    fit flags allow for. NaN with fewer than 2 examples.
    """
    m, n_items = len(example_losses), sum(example_items)
    if m < 2 or n_items == 0:
        return math.nan
    mean = sum(example_losses) / n_items
    spread = sum((loss - mean * n) ** 2 for loss, n in zip(example_losses, example_items,
                                                           strict=True))
    return math.sqrt(m / (m - 1) * spread) / n_items

