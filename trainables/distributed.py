"""Data parallelism inside one trial: the torch.distributed side (no Ray here).

Ray Train starts the ranks and their process group (gloo on CPU, NCCL on GPU; see
`data_parallel`), and every rank runs the same `loop.fit`. Each global micro-batch is
`batch_size x world_size` examples, taken from the epoch order all ranks compute from the seed;
rank r trains on its contiguous share. Each rank's loss is weighted by its share of the global
batch's loss items (examples, or completion tokens for causal LMs), so DDP's gradient average
(or FSDP's reduce-scatter, see `fsdp`) equals the gradient of the mean loss over the whole
global batch: W workers x batch_size B train exactly like one process with batch_size W x B (up
to float rounding), uneven last batches included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from trainables.config import Task
from trainables.data import IGNORE_INDEX


@dataclass(frozen=True)
class Rank:
    """This process's place in its trial's data-parallel group (world_size 1: no group)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Rank()


def loss_items(examples: Sequence[dict[str, Any]], task: Task) -> int:
    """What the model's mean loss averages over: examples, or predicted (shifted) tokens."""
    if task == "causal_lm":
        return sum(sum(1 for label in e["labels"][1:] if label != IGNORE_INDEX) for e in examples)
    return len(examples)


def shard(chunk: list[dict[str, Any]], rank: Rank, task: Task) -> tuple[list[dict[str, Any]],
                                                                         float]:
    """This rank's contiguous share of a global micro-batch, and its loss weight.

    A rank whose share is empty (the epoch's last batch has fewer examples than ranks) still
    runs forward and backward, because DDP's all-reduce needs every rank: on the first example,
    with weight 0.
    """
    if not rank.distributed:
        return chunk, 1.0
    base, extra = divmod(len(chunk), rank.world_size)
    start = rank.rank * base + min(rank.rank, extra)
    local = chunk[start : start + base + (1 if rank.rank < extra else 0)]
    total = loss_items(chunk, task)
    if not local or total == 0:
        return chunk[:1], 0.0
    return local, loss_items(local, task) * rank.world_size / total


def global_loss(local_loss: torch.Tensor, weight: float, rank: Rank) -> float:
    """The mean loss over the whole global micro-batch (every rank gets it)."""
    if not rank.distributed:
        return float(local_loss.detach())
    value = (local_loss.detach().float() * weight / rank.world_size).reshape(1)
    dist.all_reduce(value)
    return float(value)


def broadcast_object(obj: Any, rank: Rank) -> Any:
    """Rank 0's `obj` on every rank."""
    if not rank.distributed:
        return obj
    holder = [obj if rank.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(obj: Any, rank: Rank) -> list[Any] | None:
    """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
    if not rank.distributed:
        return [obj]
    out: list[Any] | None = [None] * rank.world_size if rank.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(rank: Rank) -> None:
    if rank.distributed:
        dist.barrier()


def seed_rank(seed: int, rank: Rank) -> None:
    """Ranks above 0 draw their own dropout masks (rank 0 keeps the single-process stream)."""
    if rank.rank > 0:
        from trainables.runtime import seed_everything

        seed_everything(seed + 7919 * rank.rank)


def wrap(model: torch.nn.Module, device: torch.device, *,
         static_graph: bool) -> torch.nn.Module:
    """DDP over the trainable parameters only.

    Frozen weights come from the same files on every rank, so they are neither broadcast at
    construction (that would copy the whole base model) nor all-reduced; LoRA adapters and the
    new classifier head are. Buffers are constants here (no batch norm): not broadcast.
    """
    from torch.nn.parallel import DistributedDataParallel

    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    frozen += [name for name, _ in model.named_buffers()]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, frozen)
    return DistributedDataParallel(
        model,
        device_ids=[device.index or 0] if device.type == "cuda" else None,
        broadcast_buffers=False,
        find_unused_parameters=False,  # every trainable parameter takes part in every forward
        static_graph=static_graph,  # gradient checkpointing re-runs forward inside backward
    )
