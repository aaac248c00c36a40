"""Soup weight arithmetic on hand-made adapters: exact LoRA updates, heads, TIES. No Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sweep_helpers import lm_config

from orchestrator.config.loading import load_config
from orchestrator.post.errors import UnsupportedRequestError
from orchestrator.post.merging import LoraFactors, combine_lora, load_pot, ties_lora
from trainables.checkpointing import ADAPTER_DIR, MODEL_DIR, SPEC_FILE
from trainables.config import TrialSpec


def _factors(rank: int, alpha: float, seed: int, shape: tuple[int, int] = (6, 5)) -> LoraFactors:
    generator = torch.Generator().manual_seed(seed)
    out_features, in_features = shape
    return LoraFactors(a=torch.randn(rank, in_features, generator=generator),
                       b=torch.randn(out_features, rank, generator=generator),
                       scale=alpha / rank)


def test_combination_is_the_weighted_sum_of_exact_updates_for_different_ranks() -> None:
    first, second = _factors(rank=2, alpha=8, seed=0), _factors(rank=5, alpha=4, seed=1)
    weights = [0.3, 0.7]
    expected = (0.3 * (8 / 2) * first.b @ first.a) + (0.7 * (4 / 5) * second.b @ second.a)
    assert torch.allclose(combine_lora([first, second], weights), expected, atol=1e-6)

    # Averaging A and B separately (the smaller rank zero-padded) is a different matrix.
    pad_a = torch.cat([first.a, torch.zeros(3, 5)])
    pad_b = torch.cat([first.b, torch.zeros(6, 3)], dim=1)
    factor_mean = (0.3 * pad_b + 0.7 * second.b) @ (0.3 * pad_a + 0.7 * second.a)
    scale_mean = 0.3 * first.scale + 0.7 * second.scale
    assert not torch.allclose(factor_mean * scale_mean, expected, atol=1e-2)


def test_transposed_layers_and_weight_count_check() -> None:
    factors = _factors(rank=3, alpha=3, seed=2)
    transposed = LoraFactors(factors.a, factors.b, factors.scale, transpose=True)
    assert torch.equal(transposed.delta(), factors.delta().T)
    with pytest.raises(ValueError, match="one weight per adapter"):
        combine_lora([factors], [0.5, 0.5])


@pytest.mark.filterwarnings("ignore:The density 1.0")
def test_ties_keeps_agreeing_entries_only() -> None:
    a = LoraFactors(torch.eye(2), torch.tensor([[1.0, 0.0], [0.0, -1.0]]), 1.0)
    b = LoraFactors(torch.eye(2), torch.tensor([[3.0, 0.0], [0.0, 2.0]]), 1.0)
    # density 1 keeps everything; entry (1,1) has votes -1 and +2: the sign is +, mean of +: 2.
    assert torch.allclose(ties_lora([a, b], density=1.0), torch.tensor([[2.0, 0.0],
                                                                       [0.0, 2.0]]))


def _write_spec(folder: Path, task: str, finetune: str, model_dir: Path,
                num_labels: int | None) -> None:
    """The spec.json a trial writes into every checkpoint: says LoRA or full fine-tuning."""
    spec = TrialSpec(task=task, model={"path": str(model_dir)}, data={"train": "unused.jsonl"},
                     train={"finetune": finetune}, num_labels=num_labels)
    (folder / SPEC_FILE).write_text(spec.model_dump_json())


def _adapter_checkpoint(folder: Path, base_dir: Path, task: str, rank: int, alpha: float,
                        seed: int, num_labels: int | None = None) -> Path:
    """A checkpoint folder (adapter/ + spec.json) with random, non-zero LoRA weights."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    if task == "causal_lm":
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear",
                            task_type=TaskType.CAUSAL_LM)
    else:
        base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=num_labels)
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=["query", "value"],
                            task_type=TaskType.SEQ_CLS)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                param.normal_(0, 0.2)
    model.save_pretrained(folder / ADAPTER_DIR)
    _write_spec(folder, task, "lora", base_dir, num_labels)
    return folder


@pytest.fixture(scope="module")
def two_lm_adapters(tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("adapters")
    return [_adapter_checkpoint(root / "r2", tiny_lm_dir, "causal_lm", rank=2, alpha=8, seed=0),
            _adapter_checkpoint(root / "r4", tiny_lm_dir, "causal_lm", rank=4, alpha=4, seed=1)]


def _peft(base_dir: Path, checkpoints: list[Path]):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir),
                                      checkpoints[0] / ADAPTER_DIR, adapter_name="a0")
    for i, checkpoint in enumerate(checkpoints[1:], start=1):
        model.load_adapter(checkpoint / ADAPTER_DIR, adapter_name=f"a{i}")
    return model.eval()


def test_pot_merges_exact_updates_into_the_base(tiny_lm_dir: Path, two_lm_adapters) -> None:
    config = load_config(lm_config(tiny_lm_dir))
    pot = load_pot(config, two_lm_adapters, ["r2", "r4"])
    reference = _peft(tiny_lm_dir, two_lm_adapters)
    ids = torch.tensor([[5, 17, 30, 42, 9, 11]])

    pot.mix([0.0, 1.0])  # one ingredient alone: the trial's own model, merged
    reference.set_adapter("a1")
    with torch.no_grad():
        assert torch.allclose(pot.model(input_ids=ids).logits, reference(input_ids=ids).logits,
                              atol=1e-5)

    pot.mix([0.4, 0.6])
    layer = reference.base_model.model.model.layers[1].mlp.down_proj
    expected = (layer.base_layer.weight + 0.4 * layer.get_delta_weight("a0")
                + 0.6 * layer.get_delta_weight("a1"))
    assert layer.r == {"a0": 2, "a1": 4}
    assert torch.allclose(pot.model.model.layers[1].mlp.down_proj.weight, expected, atol=1e-6)


def test_ties_equals_peft_ties_svd_at_full_rank(tiny_lm_dir: Path, two_lm_adapters) -> None:
    """peft's own TIES on the exact updates (`ties_svd`), with an SVD rank that loses nothing,
    merges to the same model as ours."""
    config = load_config(lm_config(tiny_lm_dir))
    pot = load_pot(config, two_lm_adapters, ["r2", "r4"])
    pot.mix([1.0, 1.0], ties_density=0.5)
    reference = _peft(tiny_lm_dir, two_lm_adapters)
    reference.add_weighted_adapter(["a0", "a1"], [1.0, 1.0], "ties", combination_type="ties_svd",
                                   density=0.5, svd_rank=64, svd_full_matrices=False)
    reference.set_adapter("ties")
    merged = reference.merge_and_unload()
    ours = dict(pot.model.named_parameters())
    for name, param in merged.named_parameters():
        assert torch.allclose(ours[name], param, atol=1e-5), name


def test_classifier_heads_are_averaged_with_the_soup_weights(
    tiny_encoder_dir: Path, sentiment_files: dict, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    checkpoints = [_adapter_checkpoint(tmp_path / f"c{i}", tiny_encoder_dir,
                                       "sequence_classification", rank=2 + 2 * i, alpha=8,
                                       seed=i, num_labels=3) for i in range(2)]
    config = load_config(lm_config(
        tiny_encoder_dir, task="sequence_classification", metric="eval_f1",
        data={"train": sentiment_files["train"], "text_column": "sentence"},
        lora={"r": 2, "target_modules": ["query", "value"]},
    ))
    pot = load_pot(config, checkpoints, ["c0", "c1"])
    pot.mix([0.25, 0.75])
    heads = [load_file(str(c / ADAPTER_DIR / "adapter_model.safetensors"))
             ["base_model.model.classifier.weight"] for c in checkpoints]
    assert torch.allclose(pot.model.classifier.weight, 0.25 * heads[0] + 0.75 * heads[1],
                          atol=1e-6)


def test_full_finetuning_soups_average_every_weight(tiny_lm_dir: Path, two_lm_adapters,
                                                     tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    checkpoints = []
    for i in range(2):
        model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.1)
        model.save_pretrained(tmp_path / f"full{i}" / MODEL_DIR)
        _write_spec(tmp_path / f"full{i}", "causal_lm", "full", tiny_lm_dir, None)
        checkpoints.append((tmp_path / f"full{i}", dict(model.named_parameters())))
    config = load_config(lm_config(tiny_lm_dir))
    pot = load_pot(config, [c for c, _ in checkpoints], ["full0", "full1"])
    pot.mix([0.5, 0.5])
    for name, param in pot.model.named_parameters():
        expected = (checkpoints[0][1][name] + checkpoints[1][1][name]) / 2
        assert torch.allclose(param, expected, atol=1e-6), name
    with pytest.raises(UnsupportedRequestError, match="mix LoRA and full fine-tuning"):
        load_pot(config, [two_lm_adapters[0], checkpoints[0][0]], ["lora", "full"])
