"""What only GPUs show about FSDP; skipped without 2 CUDA devices (CPU runs cover the rest:
`test_sharded_fit.py` with gloo, `test_data_parallel.py` on Ray Train).

On 2 GPUs with NCCL, `loop.fit` shards the model onto the devices and (fp32, TF32 off) trains
like one GPU with twice the batch; and what FSDP is for: each GPU's peak memory
(`peak_cuda_mb`, rank 0's) is well below DDP's, since weights, gradients and AdamW state are
split in two instead of replicated.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fit_helpers import checkpoint_metrics, full_ft_plan, keep_checkpoints
from process_group import run_ranks

from trainables.config import TrialSpec
from trainables.data import PreparedData
from trainables.distributed import Rank
from trainables.loop import fit

pytestmark = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
STEPS = 4


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory):
    from tiny_models import make_tiny_causal_lm

    # Wide enough that weights, gradients and AdamW state (16 bytes/parameter, ~50 MB) stand
    # out from activations and CUDA's own allocations.
    model = make_tiny_causal_lm(tmp_path_factory.mktemp("lm"), hidden_size=512,
                                intermediate_size=1376, num_layers=4)
    return full_ft_plan(model, {
        "batch_size": 4, "max_steps": STEPS, "eval_every_steps": STEPS, "seed": 0,
        "dropout": 0.0, "learning_rate": 1e-3, "lr_schedule": "constant"}, train_examples=64)


def _ranks(rank: Rank, spec: TrialSpec, data: PreparedData, pad_id: int, out: Path) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    for strategy in ("ddp", "fsdp"):
        fit(spec.model_copy(update={"workers": 2, "strategy": strategy}), data, pad_id,
            keep_checkpoints(out / strategy), rank=rank)


@pytest.fixture(scope="module")
def runs(plan, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gpu")
    run_ranks(2, _ranks, plan.spec, plan.data, plan.pad_id, out, backend="nccl")
    torch.backends.cuda.matmul.allow_tf32 = False
    one = plan.spec.model_copy(update={
        "train": plan.spec.train.model_copy(update={"batch_size": 8})})
    fit(one, plan.data, plan.pad_id, keep_checkpoints(out / "one"))  # on cuda:0
    return out


def _final(runs: Path, name: str) -> dict:
    return checkpoint_metrics(runs / name / f"step-{STEPS}")


def test_fsdp_on_two_gpus_trains_like_one_gpu_with_the_global_batch(runs: Path) -> None:
    one, sharded = _final(runs, "one"), _final(runs, "fsdp")
    assert sharded["world_size"] == 2
    for name in ("eval_loss", "train_loss", "tokens_seen"):
        assert sharded[name] == pytest.approx(one[name], rel=1e-4), name


def test_fsdp_needs_less_memory_per_gpu_than_ddp(runs: Path) -> None:
    ddp, sharded = _final(runs, "ddp"), _final(runs, "fsdp")
    assert sharded["peak_cuda_mb"] < 0.75 * ddp["peak_cuda_mb"], (sharded, ddp)
