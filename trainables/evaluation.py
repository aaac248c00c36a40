"""Batching and evaluation metrics shared by both trainables."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from trainables.config import Task
from trainables.data import IGNORE_INDEX


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
) -> dict[str, float]:
    """Metrics on a held-out split, keyed as the trainables report them (`eval_*`)."""
    was_training = model.training
    model.eval()
    loss_sum, n_items, correct = 0.0, 0, 0
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
            loss_sum += float(
                torch.nn.functional.cross_entropy(
                    shift_logits.reshape(-1, shift_logits.size(-1)),
                    shift_labels.reshape(-1),
                    ignore_index=IGNORE_INDEX,
                    reduction="sum",
                )
            )
            n_items += int(valid.sum())
            correct += int(((shift_logits.argmax(-1) == shift_labels) & valid).sum())
        else:
            loss_sum += float(
                torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum")
            )
            n_items += len(batch["labels"])
            preds.extend(logits.argmax(-1).tolist())
            labels.extend(batch["labels"].tolist())
    if was_training:
        model.train()
    loss = loss_sum / max(n_items, 1)
    if task == "causal_lm":
        return {
            "eval_loss": loss,
            "eval_perplexity": math.exp(min(loss, 50.0)),
            "eval_token_accuracy": correct / max(n_items, 1),
        }
    assert num_labels is not None
    return {
        "eval_loss": loss,
        "eval_accuracy": sum(p == y for p, y in zip(preds, labels, strict=True)) / len(labels),
        "eval_f1": macro_f1(preds, labels, num_labels),
    }

