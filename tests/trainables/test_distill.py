"""Distillation's pieces against hand computations: the KL term in both directions, the loss
on a causal LM's completion tokens, the teacher's top-k targets, the training loop's mix of
KL and cross-entropy, and smaller copies of a model with some layers kept."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tiny_models import make_tiny_causal_lm, make_tiny_encoder

from trainables.config import DataConfig, DistillConfig, ModelConfig, TrainConfig, TrialSpec
from trainables.data import IGNORE_INDEX, PreparedData
from trainables.distill import (
    collate_targets,
    distill_loss,
    keep_layers,
    kl_term,
    spread_layers,
    teacher_targets,
)
from trainables.loop import fit


def _softmax(row: list[float], t: float) -> list[float]:
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_kl_term_is_the_hand_computed_kl_times_t_squared(direction: str) -> None:
    student = [[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]]
    teacher = [[3.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
    t = 2.0
    expected = 0.0
    for s_row, t_row in zip(student, teacher, strict=True):
        q, p = _softmax(s_row, t), _softmax(t_row, t)
        a, b = (p, q) if direction == "forward" else (q, p)
        expected += sum(x * math.log(x / y) for x, y in zip(a, b, strict=True))
    expected = expected / 2 * t * t
    got = kl_term(torch.tensor(student), torch.tensor(teacher), t, direction)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert kl_term(torch.tensor(teacher), torch.tensor(teacher), t, direction).item() \
        == pytest.approx(0.0, abs=1e-6)


def test_forward_and_reverse_kl_differ_on_asymmetric_distributions() -> None:
    s, t = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    assert kl_term(s, t, 1.0, "forward").item() != pytest.approx(
        kl_term(s, t, 1.0, "reverse").item(), rel=1e-3)


def test_causal_lm_loss_reads_completion_positions_in_order() -> None:
    """Position p predicts token p + 1: only positions whose next label is kept take part, row
    by row, and the student's logits are gathered at the teacher's top-k ids."""
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5],
                           [IGNORE_INDEX, 2, 6, IGNORE_INDEX, IGNORE_INDEX]])
    k = 3
    positions = [(0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]  # (row, p) with labels[row, p+1] kept
    ids = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 0, 1], [2, 3, 4], [5, 6, 0]])
    values = torch.randn(len(positions), k)
    cfg = DistillConfig(teacher="t", alpha=0.75, temperature=1.5, kl="reverse")
    ce = torch.tensor(2.0)
    got = distill_loss(logits, labels, {"teacher_logits": values, "teacher_ids": ids}, ce, cfg,
                       "causal_lm")
    student = torch.stack([logits[r, p, ids[i]] for i, (r, p) in enumerate(positions)])
    expected = 0.75 * kl_term(student, values, 1.5, "reverse") + 0.25 * 2.0
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_teacher_targets_are_the_top_k_logits_of_each_completion_position(tmp_path: Path
                                                                           ) -> None:
    from transformers import AutoModelForCausalLM

    folder = make_tiny_causal_lm(tmp_path / "lm")
    model = AutoModelForCausalLM.from_pretrained(folder)
    examples = [{"input_ids": [5, 6, 7, 8, 9], "labels": [IGNORE_INDEX, IGNORE_INDEX, 7, 8, 9]},
                {"input_ids": [10, 11, 12], "labels": [IGNORE_INDEX, 11, 12]}]
    targets = teacher_targets(model, examples, task="causal_lm", pad_id=0, top_k=4,
                              batch_size=2, device=torch.device("cpu"))
    assert [t["teacher_ids"].shape for t in targets] == [(3, 4), (2, 4)]
    with torch.no_grad():
        full = model(input_ids=torch.tensor([examples[0]["input_ids"]])).logits[0]
    top = full[1:4].topk(4, -1)  # positions 1, 2, 3 predict the completion tokens 7, 8, 9
    assert torch.equal(targets[0]["teacher_ids"], top.indices.to(torch.int32))
    # Stored less each row's maximum (the softmax is the same), in bfloat16.
    shifted = top.values - top.values[:, :1]
    assert torch.allclose(targets[0]["teacher_logits"].float(), shifted, atol=0.02)
    assert torch.allclose(targets[0]["teacher_logits"].float().softmax(-1),
                          top.values.softmax(-1), atol=0.01)
    padded = teacher_targets(model, examples[:1], task="causal_lm", pad_id=0, top_k=4,
                             batch_size=1, device=torch.device("cpu"), vocab_size=10)
    assert int(padded[0]["teacher_ids"].max()) < 10  # ids past the student's vocabulary: never
    batch = collate_targets([{**e, **t} for e, t in zip(examples, targets, strict=True)],
                            "causal_lm")
    assert batch["teacher_ids"].shape == (5, 4)


def test_collate_refuses_a_distillation_without_targets() -> None:
    with pytest.raises(RuntimeError, match="teacher's targets"):
        collate_targets([{"input_ids": [1], "labels": 0}], "sequence_classification")


def _classification(tmp_path: Path, distill: DistillConfig | None, seed_model: int = 0
                    ) -> tuple[TrialSpec, PreparedData]:
    folder = make_tiny_encoder(tmp_path / f"enc{seed_model}", seed=seed_model)
    rng = torch.Generator().manual_seed(0)
    train = [{"input_ids": torch.randint(3, 60, (8,), generator=rng).tolist(), "labels": i % 3}
             for i in range(24)]
    spec = TrialSpec(task="sequence_classification", model=ModelConfig(path=str(folder)),
                     data=DataConfig(train="unused.jsonl"), num_labels=3, distill=distill,
                     train=TrainConfig(batch_size=8, max_steps=12, eval_every_steps=12,
                                       learning_rate=5e-3, finetune="full", seed=0))
    return spec, PreparedData(task="sequence_classification", train=train,
                              validation=train[:8], num_labels=3)


def test_alpha_zero_trains_exactly_like_no_distillation(tmp_path: Path) -> None:
    plain_spec, data = _classification(tmp_path, None)
    plain = fit(plain_spec, data, 2, lambda m, c: None)
    spec, data = _classification(tmp_path, DistillConfig(teacher="t", alpha=0.0))
    for example in data.train:
        example["teacher_logits"] = torch.tensor([5.0, -5.0, 0.0])
    mixed = fit(spec, data, 2, lambda m, c: None)
    assert mixed["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-6)
    assert mixed["eval_loss"] == pytest.approx(plain["eval_loss"], rel=1e-6)


def test_alpha_one_pulls_the_student_towards_the_teacher(tmp_path: Path) -> None:
    """Targets that always favour class 1, whatever the gold label: with alpha 1 the student
    learns them, and without distillation it does not."""
    teacher = torch.tensor([-3.0, 3.0, -3.0])
    predictions = {}
    for name, distill in (("plain", None), ("distilled", DistillConfig(teacher="t", alpha=1.0,
                                                                       temperature=1.0))):
        spec, data = _classification(tmp_path, distill)
        if distill is not None:
            for example in data.train:
                example["teacher_logits"] = teacher
        captured: dict[str, torch.Tensor] = {}

        def report(metrics: dict, checkpoint: Path | None, captured: dict = captured,
                   data: PreparedData = data) -> None:
            from transformers import AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_pretrained(checkpoint / "model")
            with torch.no_grad():
                ids = torch.tensor([e["input_ids"] for e in data.train])
                captured["p"] = model(input_ids=ids).logits.softmax(-1)[:, 1].mean()

        fit(spec, data, 2, report)
        predictions[name] = captured["p"].item()
    assert predictions["distilled"] > 0.6 > 0.45 > predictions["plain"], predictions


@pytest.mark.parametrize("kind", ["encoder", "llama"])
def test_a_student_keeps_the_chosen_layers_and_reloads(tmp_path: Path, kind: str) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if kind == "encoder":
        folder = make_tiny_encoder(tmp_path / "t")
        auto = AutoModelForSequenceClassification
        teacher = auto.from_pretrained(folder, num_labels=3)
        blocks = lambda m: m.bert.encoder.layer  # noqa: E731
    else:
        folder = make_tiny_causal_lm(tmp_path / "t", num_layers=4)
        auto = AutoModelForCausalLM
        teacher = auto.from_pretrained(folder)
        blocks = lambda m: m.model.layers  # noqa: E731
    originals = [dict(b.state_dict()) for b in blocks(teacher)]
    keep = [0, len(originals) - 1]
    student = keep_layers(teacher, keep)
    student.save_pretrained(tmp_path / "s")
    reloaded = auto.from_pretrained(tmp_path / "s")
    assert reloaded.config.num_hidden_layers == 2 == len(blocks(reloaded))
    for new, old in enumerate(keep):
        for name, tensor in blocks(reloaded)[new].state_dict().items():
            assert torch.equal(tensor, originals[old][name]), name
    if kind == "llama":
        assert [b.self_attn.layer_idx for b in blocks(reloaded)] == [0, 1]
        out = reloaded.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False)
        assert out.shape == (1, 6)
    with pytest.raises(ValueError, match="increasing ids"):
        keep_layers(auto.from_pretrained(folder), [1, 0])


def test_spread_layers() -> None:
    assert spread_layers(6) == [0, 2, 4]
    assert spread_layers(6, 3) == [0, 2, 5]
    assert spread_layers(12, 4) == [0, 4, 7, 11]
    assert spread_layers(5, 1) == [0]
    with pytest.raises(ValueError):
        spread_layers(3, 4)
