"""SLERP of two trials: the formula against hand computations, then on hand-made checkpoints
(LoRA updates, full fine-tuning task vectors, heads) merged into a tiny model. No Ray."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from sweep_helpers import lm_config

from orchestrator.config.loading import load_config
from orchestrator.post.merging import load_pot
from orchestrator.post.slerp import PARALLEL_COS, SlerpPot, is_head, search_t, slerp
from trainables.checkpointing import ADAPTER_DIR, MODEL_DIR, SPEC_FILE
from trainables.config import TrialSpec

X, Y = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


def test_orthogonal_unit_vectors_turn_at_a_constant_rate() -> None:
    # theta = 90 degrees: t = 1/3 is 30 degrees from x; weights sin(60)/sin(90), sin(30)/sin(90)
    mixed, linear = slerp(1 / 3, X, Y)
    assert torch.allclose(mixed, torch.tensor([math.sqrt(3) / 2, 0.5]), atol=1e-7)
    assert not linear
    # linear interpolation would give [2/3, 1/3]: shorter, and at 26.6 degrees
    assert not torch.allclose(mixed, (2 / 3) * X + (1 / 3) * Y, atol=1e-2)


def test_a_known_sixty_degree_angle_is_halved_at_t_one_half() -> None:
    b = torch.tensor([0.5, math.sqrt(3) / 2])  # 60 degrees from x
    mixed, _ = slerp(0.5, X, b)
    # 30 degrees, unit norm: s0 = s1 = sin(30)/sin(60) = 1/sqrt(3)
    assert torch.allclose(mixed, torch.tensor([math.sqrt(3) / 2, 0.5]), atol=1e-7)
    assert torch.allclose(mixed, (X + b) / math.sqrt(3), atol=1e-7)


def test_endpoints_are_the_two_tensors_exactly() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=generator), 3 * torch.randn(4, 3, generator=generator)
    assert torch.allclose(slerp(0.0, a, b)[0], a, atol=1e-6)
    assert torch.allclose(slerp(1.0, a, b)[0], b, atol=1e-6)


def test_equal_norms_are_kept_where_linear_interpolation_shrinks_them() -> None:
    a, b = 2 * X, 2 * Y
    for t in (0.1, 0.25, 0.5, 0.9):
        assert float(slerp(t, a, b)[0].norm()) == pytest.approx(2.0, rel=1e-6)
    assert float(((a + b) / 2).norm()) == pytest.approx(math.sqrt(2))  # lerp's 2 cos(45)


def test_different_norms_follow_shoemakes_weights() -> None:
    # |a| = 1, |b| = 3, 90 degrees: sin((1-t) pi/2) a + sin(t pi/2) b
    mixed, _ = slerp(0.5, X, 3 * Y)
    assert torch.allclose(mixed, torch.tensor([math.sqrt(0.5), 3 * math.sqrt(0.5)]), atol=1e-7)


@pytest.mark.parametrize(("a", "b"), [
    (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 4.0, 6.001])),  # parallel
    (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, -2.0, -3.0])),  # anti-parallel
    (torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3)),  # no direction on one side
    (torch.zeros(3), torch.zeros(3)),
])
def test_parallel_or_zero_vectors_fall_back_to_linear_interpolation(a, b) -> None:
    mixed, linear = slerp(0.3, a, b)
    assert linear
    assert torch.allclose(mixed, 0.7 * a + 0.3 * b, atol=1e-6)
    assert torch.isfinite(mixed).all()


def test_the_fallback_threshold_is_on_the_cosine() -> None:
    just_below = math.acos(PARALLEL_COS) * 1.5  # an angle whose cosine is below the threshold
    b = torch.tensor([math.cos(just_below), math.sin(just_below)])
    assert not slerp(0.5, X, b)[1]
    tighter = math.acos(PARALLEL_COS) * 0.5
    assert slerp(0.5, X, torch.tensor([math.cos(tighter), math.sin(tighter)]))[1]


def test_dtype_and_shape_are_kept_and_shapes_must_match() -> None:
    a = torch.randn(3, 4, dtype=torch.bfloat16)
    b = torch.randn(3, 4, dtype=torch.bfloat16)
    mixed, _ = slerp(0.5, a, b)
    assert mixed.dtype == torch.bfloat16 and mixed.shape == (3, 4)
    with pytest.raises(ValueError, match="one shape"):
        slerp(0.5, torch.zeros(2), torch.zeros(3))


def test_heads_are_recognised_by_peft_module_names() -> None:
    assert is_head("classifier.weight") and is_head("score.weight")
    assert is_head("classifier.out_proj.bias")  # RoBERTa's two-layer head
    assert not is_head("model.layers.0.self_attn.q_proj.weight")
    assert not is_head("classifier_free.weight") and not is_head("score")


# --- on checkpoints ---------------------------------------------------------------------------

def _write_spec(folder: Path, task: str, finetune: str, model_dir: Path,
                num_labels: int | None) -> None:
    spec = TrialSpec(task=task, model={"path": str(model_dir)}, data={"train": "unused.jsonl"},
                     train={"finetune": finetune}, num_labels=num_labels)
    (folder / SPEC_FILE).write_text(spec.model_dump_json())


def _lora_checkpoint(folder: Path, base_dir: Path, rank: int, alpha: float, seed: int,
                     targets: list[str]) -> Path:
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=targets, task_type=TaskType.CAUSAL_LM))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.2)
    model.save_pretrained(folder / ADAPTER_DIR)
    _write_spec(folder, "causal_lm", "lora", base_dir, None)
    return folder


def _delta(checkpoint: Path, module: str) -> torch.Tensor:
    import json

    from safetensors.torch import load_file

    config = json.loads((checkpoint / ADAPTER_DIR / "adapter_config.json").read_text())
    weights = load_file(str(checkpoint / ADAPTER_DIR / "adapter_model.safetensors"))
    key = f"base_model.model.{module}"
    scale = config["lora_alpha"] / config["r"]
    return weights[f"{key}.lora_B.weight"] @ weights[f"{key}.lora_A.weight"] * scale


def test_lora_slerp_interpolates_the_exact_updates(tiny_lm_dir: Path, tmp_path: Path) -> None:
    """W = W0 + slerp(t; B_a A_a s_a, B_b A_b s_b) for ranks 2 and 4; a module one trial did
    not adapt is interpolated linearly towards zero; t = 0 and 1 are the trials' own models."""
    from transformers import AutoModelForCausalLM

    a = _lora_checkpoint(tmp_path / "a", tiny_lm_dir, 2, 8, 0, ["q_proj", "v_proj"])
    b = _lora_checkpoint(tmp_path / "b", tiny_lm_dir, 4, 4, 1, ["q_proj"])
    pot = load_pot(load_config(lm_config(tiny_lm_dir)), [a, b], ["a", "b"])
    pair = SlerpPot.of(pot, lora=True)
    base = dict(AutoModelForCausalLM.from_pretrained(tiny_lm_dir).named_parameters())
    q, v = "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"

    counts = pair.mix(0.3)
    weights = dict(pot.model.named_parameters())
    expected_q = base[f"{q}.weight"] + slerp(0.3, _delta(a, q), _delta(b, q))[0]
    assert torch.allclose(weights[f"{q}.weight"], expected_q, atol=1e-6)
    # by hand, for the record: the two updates are far from parallel
    da, db = _delta(a, q).flatten().double(), _delta(b, q).flatten().double()
    theta = math.acos(float(da @ db / (da.norm() * db.norm())))
    hand = (math.sin(0.7 * theta) * da + math.sin(0.3 * theta) * db) / math.sin(theta)
    assert torch.allclose(weights[f"{q}.weight"].double(),
                          base[f"{q}.weight"].double() + hand.reshape(expected_q.shape),
                          atol=1e-6)
    assert torch.allclose(weights[f"{v}.weight"], base[f"{v}.weight"] + 0.7 * _delta(a, v),
                          atol=1e-6)
    assert counts == {"spherical": 2, "linear_parallel": 2, "linear_head": 0}  # 2 layers each

    for t, weight in ((0.0, [1.0, 0.0]), (1.0, [0.0, 1.0])):
        pair.mix(t)
        ours = {k: p.clone() for k, p in pot.model.named_parameters()}
        pot.mix(weight)
        for name, param in pot.model.named_parameters():
            assert torch.allclose(ours[name], param, atol=1e-6), (t, name)


def test_full_finetuning_slerp_interpolates_task_vectors(tiny_lm_dir: Path,
                                                         tmp_path: Path) -> None:
    """theta = theta0 + slerp(t; theta_a - theta0, theta_b - theta0), per tensor."""
    from transformers import AutoModelForCausalLM

    base = {k: v.detach().clone()
            for k, v in AutoModelForCausalLM.from_pretrained(tiny_lm_dir).named_parameters()}
    trained = []
    for i in range(2):
        model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
        torch.manual_seed(10 + i)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.05)
        model.save_pretrained(tmp_path / f"full{i}" / MODEL_DIR)
        _write_spec(tmp_path / f"full{i}", "causal_lm", "full", tiny_lm_dir, None)
        trained.append({k: v.detach().clone() for k, v in model.named_parameters()})
    pot = load_pot(load_config(lm_config(tiny_lm_dir)), [tmp_path / "full0", tmp_path / "full1"],
                   ["full0", "full1"])
    pair = SlerpPot.of(pot, lora=False)

    counts = pair.mix(0.5)
    for name, param in pot.model.named_parameters():
        expected = base[name] + slerp(0.5, trained[0][name] - base[name],
                                      trained[1][name] - base[name])[0]
        assert torch.allclose(param, expected, atol=1e-6), name
    assert counts["spherical"] > 0 and counts["linear_head"] == 0
    # independent noise: the task vectors are near-orthogonal, so the midpoint keeps their
    # norm where an average would lose ~29% of it
    name = "model.layers.0.mlp.down_proj.weight"
    tau = dict(pot.model.named_parameters())[name].detach() - base[name]
    assert float(tau.norm()) == pytest.approx(
        float((trained[0][name] - base[name]).norm()), rel=0.05)


def test_search_t_keeps_the_best_and_ends_mixed_at_it() -> None:
    class FakePair:
        def __init__(self) -> None:
            self.mixed: list[float] = []

        def mix(self, t: float) -> dict[str, int]:
            self.mixed.append(t)
            return {"spherical": 1, "linear_parallel": 0, "linear_head": 0}

    pair = FakePair()
    losses = {0.25: 0.9, 0.5: 0.7, 0.75: 0.7}  # a tie: the first is kept

    t, metrics, steps = search_t(
        pair, [0.25, 0.5, 0.75], lambda: {"eval_loss": losses[pair.mixed[-1]]},
        lambda new, old: new["eval_loss"] < old["eval_loss"])

    assert t == 0.5 and metrics == {"eval_loss": 0.7}
    assert pair.mixed == [0.25, 0.5, 0.75, 0.5]  # re-mixed at the best
    assert [s["kept"] for s in steps] == [False, True, False]
    assert [s["validation"]["eval_loss"] for s in steps] == [0.9, 0.7, 0.7]


# --- requests that cannot work, refused before anything is loaded ------------------------------

@pytest.mark.parametrize(("kwargs", "fragments"), [
    ({"method": "slerp", "top_k": 3}, ["slerp interpolates two trials", "top_k=3",
                                       "--trials A,B"]),
    ({"method": "slerp", "trials": ["a"]}, ["two different trials", "--trials a"]),
    ({"method": "slerp", "trials": ["a", "a"]}, ["two different trials"]),
    ({"method": "slerp", "trials": ["a", "b"], "top_k": 2}, ["--trials A,B or --top-k"]),
    ({"method": "slerp", "t": [0.5, 1.5]}, ["distinct values in [0, 1]", "[0.5, 1.5]"]),
    ({"method": "slerp", "t": [0.5, 0.5]}, ["distinct values in [0, 1]"]),
    ({"method": "slerp", "t": []}, ["distinct values in [0, 1]", "--t 0.25,0.5,0.75"]),
    ({"method": "uniform", "t": 0.3}, ["--t is an option of --method slerp", "uniform"]),
    ({"method": "greedy", "trials": ["a", "b"]}, ["--trials is an option of --method slerp"]),
])
def test_bad_slerp_requests_say_what_to_do(tmp_path: Path, kwargs, fragments) -> None:
    from orchestrator.config.errors import UserError
    from orchestrator.post.soup import make_soup

    with pytest.raises(UserError) as info:
        make_soup(tmp_path / "no-such-experiment", **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_cli_t_list_must_be_numbers(tmp_path: Path) -> None:
    import click
    from click.testing import CliRunner

    from orchestrator.cli.post import register

    group = click.Group("sweep")
    register(group)
    result = CliRunner().invoke(group, ["soup", str(tmp_path), "--method", "slerp",
                                        "--t", "0.2,half"])
    assert result.exit_code == 2
    assert "'0.2,half' is not a number or a comma-separated list of them" in result.output
