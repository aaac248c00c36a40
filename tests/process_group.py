"""Run a function on W gloo ranks in spawned processes, without Ray: what Ray Train's workers
do around `loop.fit`, for tests of the torch side alone (DDP, FSDP, their checkpoints)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any


def _entry(rank: int, world: int, store: str, backend: str, fn: Callable[..., Any],
           args: tuple) -> None:
    if backend == "nccl":  # one GPU per rank, seen as cuda:0, as Ray Train's workers see theirs
        os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)
    import torch
    import torch.distributed as dist

    from trainables.distributed import Rank

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only
    torch.set_num_threads(1)
    # A file store: no port to pick, so no race with other tests for a free one.
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        fn(Rank(rank, world), *args)
        # Both ranks done before either tears down its gloo pairs: a rank that destroys its
        # group while its peer still holds the connection can abort in gloo's C++ threads
        # ("terminate called without an active exception", SIGABRT). A failed rank skips
        # this; mp.spawn then ends the other.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_ranks(world: int, fn: Callable[..., Any], *args: Any, backend: str = "gloo") -> None:
    """`fn(rank, *args)` on `world` ranks; raises if any rank fails. `fn` must be importable
    (module level), since the ranks are spawned processes. `backend="nccl"`: rank r drives
    GPU r."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="pg-") as folder:
        mp.spawn(_entry, args=(world, os.path.join(folder, "store"), backend, fn, args),
                 nprocs=world, join=True)
