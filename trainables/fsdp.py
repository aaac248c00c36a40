"""Fully sharded data parallelism (torch FSDP2, `fully_shard`) for full fine-tuning.

Each rank holds 1/W of every parameter, gradient and AdamW state; a block's full weights exist
only while that block runs (all-gathered for its forward and backward, then freed), and
gradients are reduce-scattered, which averages them over the ranks exactly as DDP's all-reduce
does. So the loss weights of `distributed.shard` make W sharded workers train like one process
with W times the batch, as they do for DDP.

Checkpoints keep the format a single process writes, so export, soups and resumes read them
unchanged: rank 0 gathers the full state dict (model weights, and AdamW state keyed by
parameter name) onto the CPU and saves it; on resume rank 0 reads it and broadcasts it into the
shards (`broadcast_from_rank0`), so only rank 0 ever holds a full copy, in CPU memory.

Every function here is collective: all ranks call it, in the same order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from trainables.distributed import Rank


def shard_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Shard every transformer block (the model's `_no_split_modules`), then the root (the
    embeddings, head and anything left). Blocks are sharded apart so that only one block's full
    weights are gathered at a time; without known blocks the root is one group."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    blocks = set(getattr(model, "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


@contextlib.contextmanager
def no_sync(model: torch.nn.Module, skip: bool) -> Iterator[None]:
    """Keep gradients unreduced on the micro-batches before a step's last one (DDP's
    `no_sync`): they accumulate locally and are reduce-scattered once, with the last."""
    if not skip:
        yield
        return
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


def _options(*, cpu_offload: bool = False, broadcast_from_rank0: bool = False) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload,
                            broadcast_from_rank0=broadcast_from_rank0)


def gather_model_state(model: torch.nn.Module) -> dict[str, Any]:
    """The full weights on rank 0's CPU (an empty dict on the other ranks)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_options(cpu_offload=True))


def gather_optimizer_state(model: torch.nn.Module,
                           optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """AdamW's full state on rank 0's CPU, keyed by parameter name (empty on the others)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))


def load_model_state(model: torch.nn.Module, weights: dict[str, Any] | None,
                     rank: Rank) -> None:
    """Rank 0's full `weights` into every rank's shards (the others pass None)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, weights if rank.is_main and weights is not None else {},
                         options=_options(broadcast_from_rank0=True))


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                         state: dict[str, Any] | None, rank: Rank) -> None:
    """Rank 0's full optimizer `state` (as `gather_optimizer_state` wrote it) into the shards."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer,
                             state if rank.is_main and state is not None else {},
                             options=_options(broadcast_from_rank0=True))

