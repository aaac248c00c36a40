"""Run a function on W gloo ranks in spawned processes, without Ray: what Ray Train's workers
do around `loop.fit`, for tests of the torch side alone (DDP, FSDP, their checkpoints)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, world: int, port: int, backend: str, fn: Callable[..., Any],
           args: tuple) -> None:
    if backend == "nccl":  # one GPU per rank, seen as cuda:0, as Ray Train's workers see theirs
        os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)
    import torch
    import torch.distributed as dist

    from trainables.distributed import Rank

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only
    torch.set_num_threads(1)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        fn(Rank(rank, world), *args)
    finally:
        dist.destroy_process_group()


def run_ranks(world: int, fn: Callable[..., Any], *args: Any, backend: str = "gloo") -> None:
    """`fn(rank, *args)` on `world` ranks; raises if any rank fails. `fn` must be importable
    (module level), since the ranks are spawned processes. `backend="nccl"`: rank r drives
    GPU r."""
    import torch.multiprocessing as mp

    mp.spawn(_entry, args=(world, _free_port(), backend, fn, args), nprocs=world, join=True)
