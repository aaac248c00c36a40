"""Knowledge distillation in a trial: the teacher's targets, the loss, and smaller students.

The teacher runs once per sweep (`teacher_targets`, called by the driver in a Ray task), and
its targets ride along with the train examples to every trial:

    classification   `teacher_logits`: the C class logits of each example
    causal_lm        `teacher_logits` and `teacher_ids`: per completion-target position, the
                     values and token ids of the teacher's top-k logits ([n, k] each)

The loss mixes them with the gold labels: alpha * KL * T^2 + (1 - alpha) * CE, with both
distributions at temperature T; `kl: forward` is KL(teacher || student), `reverse` is
KL(student || teacher) as in MiniLLM. On a causal LM the KL runs over the teacher's top-k
tokens at each position, both distributions renormalized on them (the full vocabulary per
token would not fit in memory for a whole train split).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from trainables.config import DistillConfig, Task
from trainables.data import IGNORE_INDEX

TARGET_KEYS = ("teacher_logits", "teacher_ids")


def kl_term(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
            direction: str) -> torch.Tensor:
    """Mean over rows of KL between softmax(teacher / T) and softmax(student / T), times T^2
    (Hinton et al.: keeps the gradient's scale as T changes). Rows: examples or tokens."""
    log_q = F.log_softmax(student.float() / temperature, dim=-1)
    log_p = F.log_softmax(teacher.float() / temperature, dim=-1)
    if direction == "forward":
        kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    else:
        kl = (log_q.exp() * (log_q - log_p)).sum(-1)
    return kl.mean() * temperature**2


def distill_loss(logits: torch.Tensor, labels: torch.Tensor, targets: dict[str, torch.Tensor],
                 ce: torch.Tensor, cfg: DistillConfig, task: Task) -> torch.Tensor:
    """alpha * KL * T^2 + (1 - alpha) * `ce` (the model's own loss on the gold labels)."""
    if task == "causal_lm":
        # Position p predicts token p + 1; the targets hold the completion positions in order.
        positions = labels[:, 1:] != IGNORE_INDEX
        student = logits[:, :-1][positions].gather(-1, targets["teacher_ids"].long())
    else:
        student = logits
    kl = kl_term(student, targets["teacher_logits"], cfg.temperature, cfg.kl)
    return cfg.alpha * kl + (1.0 - cfg.alpha) * ce


def split_targets(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Take the teacher's targets out of a collated batch (the model must not see them)."""
    return {k: batch.pop(k) for k in TARGET_KEYS if k in batch}


def collate_targets(examples: Sequence[dict[str, Any]], task: Task) -> dict[str, torch.Tensor]:
    """The micro-batch's targets: stacked per example (classification) or concatenated over
    its completion positions in order (causal LM), as `distill_loss` reads them."""
    if "teacher_logits" not in examples[0]:
        raise RuntimeError("distillation without the teacher's targets: the driver attaches "
                           "them to the train examples (orchestrator.run.teacher)")
    if task == "causal_lm":
        return {k: torch.cat([e[k] for e in examples]) for k in TARGET_KEYS}
    return {"teacher_logits": torch.stack([e["teacher_logits"] for e in examples])}


def _padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(list(r))
        mask[i, : len(r)] = 1
    return ids, mask


@torch.no_grad()
def teacher_targets(model: torch.nn.Module, examples: Sequence[dict[str, Any]], *, task: Task,
                    pad_id: int, top_k: int, batch_size: int, device: torch.device,
                    input_ids: Sequence[Sequence[int]] | None = None,
                    autocast: Any = None, vocab_size: int | None = None
                    ) -> list[dict[str, torch.Tensor]]:
    """The teacher's targets for each example, in order (see the module docstring).

    `input_ids`: the teacher's own tokenization of each example, when its tokenizer differs
    from the student's (classification only; a causal LM's targets are per token, so teacher
    and student must share the vocabulary). `vocab_size`: the student's; a teacher whose
    embedding is padded past it (Qwen2.5's sizes share a tokenizer but not a padding) never
    proposes those ids. Logits are kept in bfloat16 (half of float32's memory on the object
    store) after subtracting each row's maximum, which leaves the softmax unchanged and keeps
    bfloat16's 3 significant digits where they matter (raw logits near 25 would lose them)."""
    model.eval().to(device)
    rows = input_ids if input_ids is not None else [e["input_ids"] for e in examples]
    out: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(rows), batch_size):
        ids, mask = _padded(rows[start : start + batch_size], pad_id)
        with autocast() if autocast else contextlib.nullcontext():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logits = logits.float()
        if task != "causal_lm":
            logits = logits - logits.max(-1, keepdim=True).values
            out += [{"teacher_logits": row.to("cpu", torch.bfloat16)} for row in logits]
            continue
        if vocab_size is not None:
            logits = logits[..., :vocab_size]
        for i, example in enumerate(examples[start : start + batch_size]):
            labels = torch.tensor(example["labels"])
            positions = torch.nonzero(labels[1:] != IGNORE_INDEX).flatten()
            values, ids_k = logits[i, positions].topk(min(top_k, logits.shape[-1]), -1)
            values = values - values[:, :1]  # sorted: the first is each row's maximum
            out.append({"teacher_logits": values.to("cpu", torch.bfloat16),
                        "teacher_ids": ids_k.to("cpu", torch.int32)})
    return out


def target_bytes(targets: Sequence[dict[str, torch.Tensor]]) -> int:
    return sum(t.numel() * t.element_size() for row in targets for t in row.values())


# --- a smaller copy of a model: some of its layers kept ---------------------------------------

def layer_stack(model: torch.nn.Module) -> tuple[torch.nn.Module, str, torch.nn.ModuleList]:
    """(parent, attribute, ModuleList) of the model's transformer blocks: the ModuleList as long
    as `config.num_hidden_layers` (BERT's encoder.layer, Llama's model.layers, GPT-2's h...)."""
    count = getattr(model.config, "num_hidden_layers", None)
    for _, parent in model.named_modules():
        for attr, child in parent.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == count:
                return parent, attr, child
    raise ValueError(f"found no list of {count} transformer blocks in {type(model).__name__}")


def keep_layers(model: torch.nn.Module, keep: Sequence[int]) -> torch.nn.Module:
    """The model with only the blocks `keep` (in order), renumbered; its config follows."""
    parent, attr, blocks = layer_stack(model)
    if not keep or sorted(set(keep)) != list(keep) or keep[0] < 0 or keep[-1] >= len(blocks):
        raise ValueError(f"layers to keep must be increasing ids in 0..{len(blocks) - 1}, "
                         f"got {list(keep)}")
    kept = torch.nn.ModuleList([blocks[i] for i in keep])
    for new_index, block in enumerate(kept):
        for module in block.modules():  # attention's KV-cache slot (Llama, Qwen, ...)
            if isinstance(getattr(module, "layer_idx", None), int):
                setattr(module, "layer_idx", new_index)  # noqa: B010
    setattr(parent, attr, kept)
    config: Any = model.config
    config.num_hidden_layers = len(keep)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == len(blocks):
        config.layer_types = [layer_types[i] for i in keep]
    return model


def spread_layers(num_layers: int, count: int | None = None) -> list[int]:
    """Every other layer id (0, 2, 4, ...), or `count` ids spread evenly from the first to the
    last."""
    if count is None:
        return list(range(0, num_layers, 2))
    if not 1 <= count <= num_layers:
        raise ValueError(f"cannot keep {count} of {num_layers} layers")
    if count == 1:
        return [0]
    return sorted({round(i * (num_layers - 1) / (count - 1)) for i in range(count)})
