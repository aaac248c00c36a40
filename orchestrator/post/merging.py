"""Exact weight arithmetic for soups: LoRA updates combined and merged into the base weights.

LoRA trial i changes each adapted weight by delta_W_i = scale_i * B_i @ A_i (scale = alpha / r,
as peft computes it, rank/alpha patterns and rsLoRA included). Updates are combined as full
matrices, so ranks may differ between trials:

    linear  W = W0 + sum_i w_i * delta_W_i
    ties    W = W0 + TIES(delta_W_1, ..., delta_W_k) (Yadav et al. 2023): keep each update's
            largest `density` share, elect a sign per entry, average the entries that agree
            (`peft.utils.merge_utils.ties`, weight 1 each)

Averaging A and B separately gives mean(B) @ mean(A) != mean(B @ A) and needs equal ranks.
Full tensors (classifier heads and other modules_to_save; every weight of a full fine-tuning
trial) are averaged with the normalized weights. Memory: the base model, a copy of its adapted
weights and the k adapters for LoRA; k full copies of the weights for full fine-tuning.

Why not `PeftModel.add_weighted_adapter` (peft 0.21.2): combination_type "ties" merges the A and
B factors separately (the trap above) and refuses differing ranks; "ties_svd" runs the same
`ties` on the exact delta_W_i, then re-factorizes the result by an SVD truncated to `svd_rank`
(default: the largest r). A TIES result is not low-rank (trimming and sign election break that),
so the truncation drops part of the merge, and a lossless svd_rank allocates a full-rank adapter
per module. We add the exact TIES update to the base weights directly; a test checks it equals
`add_weighted_adapter(..., "ties_svd", svd_rank=full rank, svd_full_matrices=False)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from orchestrator.config.schema import SweepConfig
from orchestrator.experiment.checkpoints import checkpoint_spec, is_lora_checkpoint
from orchestrator.post.errors import UnsupportedRequestError
from trainables import modeling
from trainables.checkpointing import ADAPTER_DIR, MODEL_DIR


@dataclass(frozen=True)
class LoraFactors:
    """One adapter's update of one weight matrix: scale * B @ A."""

    a: torch.Tensor  # (r, in_features)
    b: torch.Tensor  # (out_features, r)
    scale: float
    transpose: bool = False  # fan_in_fan_out layers (GPT-2 Conv1D) and embeddings store W.T

    def delta(self) -> torch.Tensor:
        product = self.b @ self.a
        return (product.T if self.transpose else product) * self.scale


def combine_lora(factors: Sequence[LoraFactors], weights: Sequence[float]) -> torch.Tensor:
    """sum_i w_i * scale_i * B_i @ A_i, exact for any mix of ranks."""
    if len(factors) != len(weights) or not factors:
        raise ValueError(f"need one weight per adapter, got {len(factors)} adapters and "
                         f"{len(weights)} weights")
    return sum((f.delta() * float(w) for f, w in zip(factors, weights, strict=True)),
               start=torch.zeros(()))


def ties_lora(factors: Sequence[LoraFactors], density: float) -> torch.Tensor:
    """TIES-merging of the exact updates (trim to `density`, elect signs, disjoint mean)."""
    from peft.utils.merge_utils import ties

    deltas = [f.delta() for f in factors]
    return ties(deltas, torch.ones(len(deltas)), density, majority_sign_method="total")


@dataclass
class Ingredient:
    """One trial's contribution: LoRA updates per module, full tensors per parameter name."""

    trial_id: str
    lora: dict[str, LoraFactors] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def _lora_ingredients(peft_model: Any, names: list[str]) -> list[Ingredient]:
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import ModulesToSaveWrapper

    found = [Ingredient(name) for name in names]
    for module_name, module in peft_model.base_model.model.named_modules():
        for adapter, ingredient in zip(names, found, strict=True):
            if isinstance(module, LoraLayer) and adapter in module.scaling:
                ingredient.lora[module_name] = _factors(module, adapter, module_name)
            elif isinstance(module, ModulesToSaveWrapper) and adapter in module.modules_to_save:
                state = module.modules_to_save[adapter].state_dict()
                ingredient.tensors.update({f"{module_name}.{k}": v.detach().clone()
                                           for k, v in state.items()})
    return found


def _factors(layer: Any, adapter: str, module_name: str) -> LoraFactors:
    scale = float(layer.scaling[adapter])
    if adapter in layer.lora_embedding_A:
        return LoraFactors(layer.lora_embedding_A[adapter].detach(),
                           layer.lora_embedding_B[adapter].detach(), scale, transpose=True)
    a, b = layer.lora_A[adapter], layer.lora_B[adapter]
    if (a.weight.dim() != 2 or getattr(b, "bias", None) is not None
            or layer.use_dora.get(adapter, False)):
        raise UnsupportedRequestError(
            f"{module_name}: only plain LoRA on linear and embedding layers can be souped "
            "(no DoRA, LoRA bias or convolutions); use `sweep export` for single trials"
        )
    return LoraFactors(a.weight.detach(), b.weight.detach(), scale,
                       transpose=bool(getattr(layer, "fan_in_fan_out", False)))


class Pot:
    """A plain model whose weights are rewritten for each candidate soup of the ingredients."""

    def __init__(self, model: torch.nn.Module, ingredients: list[Ingredient]) -> None:
        self.model = model.eval()
        self.ingredients = ingredients
        modules = sorted({name for ing in ingredients for name in ing.lora})
        self.base = {n: self._weight(n).detach().clone() for n in modules}
        self.tensor_names = sorted(ingredients[0].tensors)
        if any(sorted(ing.tensors) != self.tensor_names for ing in ingredients):
            raise UnsupportedRequestError(
                "the ingredients do not have the same heads/weights; soups need trials of the "
                "same model, task and target modules_to_save")

    def _weight(self, module_name: str) -> torch.Tensor:
        weight = self.model.get_submodule(module_name).weight
        assert isinstance(weight, torch.Tensor), module_name
        return weight

    @torch.no_grad()
    def mix(self, weights: Sequence[float], ties_density: float | None = None) -> None:
        """W = W0 + sum_i w_i delta_W_i (or TIES of the members' updates when ties_density is
        set); full tensors become sum_i w_i T_i / sum_i w_i. Weight 0 leaves an ingredient out."""
        members = [(ing, float(w)) for ing, w in zip(self.ingredients, weights, strict=True) if w]
        for name, base in self.base.items():
            # An ingredient that did not adapt this module contributes a zero update.
            zero = LoraFactors(torch.zeros(1, base.shape[1]), torch.zeros(base.shape[0], 1), 0.0)
            factors = [ing.lora.get(name, zero) for ing, _ in members]
            update = (ties_lora(factors, ties_density) if ties_density is not None
                      else combine_lora(factors, [w for _, w in members]))
            self._weight(name).copy_(base + update.to(base.dtype))
        total = sum(w for _, w in members)
        state = {}
        for name in self.tensor_names:
            values = [(ing.tensors[name], w) for ing, w in members]
            state[name] = (sum(t * (w / total) for t, w in values)
                           if values[0][0].is_floating_point() else values[0][0])
        if state:
            unexpected = self.model.load_state_dict(state, strict=False).unexpected_keys
            if unexpected:
                raise RuntimeError(f"soup tensors do not fit the model: {unexpected[:3]}")


def load_pot(config: SweepConfig, checkpoints: list[Path], trial_ids: list[str]) -> Pot:
    """The base model plus every trial's update, ready to mix."""
    from safetensors.torch import load_file

    kinds = {is_lora_checkpoint(c) for c in checkpoints}
    if len(kinds) > 1:
        raise UnsupportedRequestError(
            "the top-k trials mix LoRA and full fine-tuning checkpoints; soups need one kind: "
            "lower --top-k or search train.finetune no more")
    tokenizer = modeling.load_tokenizer(config.model)
    first = checkpoint_spec(checkpoints[0])
    base = modeling.load_model(config.model, config.task, num_labels=first.num_labels,
                               pad_token_id=tokenizer.pad_token_id, label_names=first.label_names)
    if kinds == {False}:  # full fine-tuning: every saved tensor is averaged
        ingredients = [Ingredient(trial_id, tensors={
            k: v for shard in sorted((c / MODEL_DIR).glob("*.safetensors"))
            for k, v in load_file(str(shard)).items()}) for c, trial_id in zip(
                checkpoints, trial_ids, strict=True)]
        return Pot(base, ingredients)
    from peft import PeftModel

    names = [f"trial{i}" for i in range(len(checkpoints))]
    peft_model = PeftModel.from_pretrained(base, checkpoints[0] / ADAPTER_DIR,
                                           adapter_name=names[0])
    for name, checkpoint in zip(names[1:], checkpoints[1:], strict=True):
        peft_model.load_adapter(checkpoint / ADAPTER_DIR, adapter_name=name)
    ingredients = _lora_ingredients(peft_model, names)
    for ingredient, trial_id in zip(ingredients, trial_ids, strict=True):
        ingredient.trial_id = trial_id
    return Pot(peft_model.unload(), ingredients)
