"""The torch side of data-parallel trials, without Ray: `loop.fit` on 2 gloo ranks (spawned
processes, as Ray Train's workers would run it) trains like one process with twice the batch, to
1e-5, with DDP and with FSDP (full fine-tuning, weights/gradients/AdamW state sharded); FSDP's
checkpoint holds the full weights in the single-process format (export reads it), a run
resumed from it on 2 ranks matches the uninterrupted one, and a distilling run (per-token
teacher targets on the examples) matches too.

The model ties its LM head to the embedding (as SmolLM2 does), which a saved state dict holds
once. 45 training examples make an uneven global batch at the end of the epoch; 6 steps of 8
cross into the second epoch. No dropout: ranks draw different masks than one process would.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from fit_helpers import checkpoint_metrics, full_ft_plan, keep_checkpoints
from process_group import run_ranks

from orchestrator.experiment.checkpoints import checkpoint_spec
from trainables import checkpointing, modeling
from trainables.checkpointing import MODEL_DIR, STATE_FILE
from trainables.config import DistillConfig, TrialSpec
from trainables.data import PreparedData
from trainables.distill import teacher_targets
from trainables.distributed import Rank
from trainables.loop import fit

STEPS, EVAL_EVERY = 6, 3


@pytest.fixture(scope="module")
def tied_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import CHARS, make_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tied-lm")
    make_tokenizer(folder, with_pad=False)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(CHARS) + 8, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, eos_token_id=1, bos_token_id=1,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def plan(tied_lm_dir: Path):
    return full_ft_plan(tied_lm_dir, {
        "batch_size": 4, "max_steps": STEPS, "eval_every_steps": EVAL_EVERY, "seed": 3,
        "dropout": 0.0, "learning_rate": 3e-3, "lr_schedule": "linear", "warmup_ratio": 0.2,
        "gradient_accumulation_steps": 1}, train_examples=45)


DISTILL = DistillConfig(teacher="another tiny Llama", alpha=0.5, temperature=2.0, kl="reverse",
                        top_k=8)


def _distilled(spec: TrialSpec, data: PreparedData, pad_id: int, folder: Path
               ) -> tuple[TrialSpec, PreparedData]:
    """The spec with `distill` and the data with a teacher's targets (another tiny Llama)."""
    from tiny_models import make_tiny_causal_lm
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(make_tiny_causal_lm(folder, seed=1))
    targets = teacher_targets(teacher, data.train, task="causal_lm", pad_id=pad_id, top_k=8,
                              batch_size=16, device=torch.device("cpu"))
    train = [{**e, **t} for e, t in zip(data.train, targets, strict=True)]
    return spec.model_copy(update={"distill": DISTILL}), dataclasses.replace(data, train=train)


def _ranks(rank: Rank, spec: TrialSpec, data: PreparedData, pad_id: int, out: Path,
           distilled: tuple[TrialSpec, PreparedData]) -> None:
    """On each rank: DDP, FSDP, FSDP resumed from its first checkpoint, and DDP distilling."""
    ddp = spec.model_copy(update={"workers": rank.world_size})
    fit(ddp, data, pad_id, keep_checkpoints(out / "ddp"), rank=rank)
    distill_spec, distill_data = distilled
    fit(distill_spec.model_copy(update={"workers": rank.world_size}), distill_data, pad_id,
        keep_checkpoints(out / "ddp-distill"), rank=rank)
    sharded = ddp.model_copy(update={"strategy": "fsdp"})
    fit(sharded, data, pad_id, keep_checkpoints(out / "fsdp"), rank=rank)
    first = out / "fsdp" / f"step-{EVAL_EVERY}"
    fit(sharded, data, pad_id, keep_checkpoints(out / "fsdp-resumed"),
        resume_from=first if rank.is_main else None, rank=rank)


@pytest.fixture(scope="module")
def runs(plan, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sharded")
    one = plan.spec.model_copy(update={
        "train": plan.spec.train.model_copy(update={"batch_size": 8})})
    torch.set_num_threads(1)
    fit(one, plan.data, plan.pad_id, keep_checkpoints(out / "one"))
    distilled = _distilled(plan.spec, plan.data, plan.pad_id, out / "teacher")
    one_distill = distilled[0].model_copy(update={"train": one.train})
    fit(one_distill, distilled[1], plan.pad_id, keep_checkpoints(out / "one-distill"))
    run_ranks(2, _ranks, plan.spec, plan.data, plan.pad_id, out, distilled)
    return out


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / MODEL_DIR / "model.safetensors"))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_train_like_one_process_with_the_global_batch(runs: Path,
                                                                strategy: str) -> None:
    for step in (EVAL_EVERY, STEPS):
        one, two = runs / "one" / f"step-{step}", runs / strategy / f"step-{step}"
        reference, got = checkpoint_metrics(one), checkpoint_metrics(two)
        assert got["world_size"] == 2 and reference["world_size"] == 1
        for name in ("eval_loss", "eval_token_accuracy", "train_loss", "tokens_seen", "epoch",
                     "learning_rate"):
            assert got[name] == pytest.approx(reference[name], abs=1e-5), (step, name)
        expected, weights = _weights(one), _weights(two)
        assert weights.keys() == expected.keys()
        for key, tensor in weights.items():
            torch.testing.assert_close(tensor, expected[key], atol=1e-5, rtol=0)
    start = modeling.load_model(checkpoint_spec(runs / "one" / f"step-{STEPS}").model,
                                "causal_lm").state_dict()
    final = _weights(runs / strategy / f"step-{STEPS}")
    moved = max(float((final[k] - start[k]).abs().max()) for k in final)
    assert moved > 1e-3  # training changed the weights, so matching them means something


def test_distilling_on_two_ranks_trains_like_one_process(runs: Path) -> None:
    """The teacher's per-token targets travel with their examples through each rank's share
    of the global batch: 2 DDP ranks distil like one process with twice the batch."""
    for step in (EVAL_EVERY, STEPS):
        reference = checkpoint_metrics(runs / "one-distill" / f"step-{step}")
        got = checkpoint_metrics(runs / "ddp-distill" / f"step-{step}")
        for name in ("eval_loss", "train_loss", "tokens_seen"):
            assert got[name] == pytest.approx(reference[name], abs=1e-5), (step, name)
    plain = checkpoint_metrics(runs / "one" / f"step-{STEPS}")["train_loss"]
    distilled = checkpoint_metrics(runs / "one-distill" / f"step-{STEPS}")["train_loss"]
    assert abs(distilled - plain) > 1e-3  # the KL term is in the loss that matched


def test_fsdp_checkpoint_is_the_single_process_format(runs: Path) -> None:
    folder = runs / "fsdp" / f"step-{STEPS}"
    assert checkpointing.verify(folder) is None
    spec = checkpoint_spec(folder)
    assert spec.strategy == "fsdp" and spec.workers == 2
    model = modeling.load_model(spec.model, "causal_lm")
    checkpointing.load_weights(folder, model, "full")  # what export and soups do
    for key, tensor in _weights(folder).items():
        torch.testing.assert_close(model.state_dict()[key], tensor, atol=0, rtol=0)
    # AdamW's state is whole too (keyed by parameter name), not one rank's shard.
    state = checkpointing.read_state(folder)
    moments = state["optimizer"]["state"]
    embed = next(k for k in moments if "embed_tokens" in k)
    assert moments[embed]["exp_avg"].shape == model.get_input_embeddings().weight.shape


def test_fsdp_resume_matches_the_uninterrupted_run(runs: Path) -> None:
    resumed, straight = runs / "fsdp-resumed", runs / "fsdp"
    assert sorted(p.name for p in resumed.iterdir()) == [f"step-{STEPS}"]
    got = checkpoint_metrics(resumed / f"step-{STEPS}")
    expected = checkpoint_metrics(straight / f"step-{STEPS}")
    for name in ("eval_loss", "train_loss", "tokens_seen", "epoch", "learning_rate"):
        assert got[name] == pytest.approx(expected[name], abs=1e-6), name
    expected_weights = _weights(straight / f"step-{STEPS}")
    for key, tensor in _weights(resumed / f"step-{STEPS}").items():
        torch.testing.assert_close(tensor, expected_weights[key], atol=1e-6, rtol=0)
    assert (resumed / f"step-{STEPS}" / STATE_FILE).exists()
