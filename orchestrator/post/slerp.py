"""SLERP of two trials: spherical linear interpolation of their task vectors (Shoemake 1985).

For two tensors a and b, flattened, at the angle theta = arccos(a.b / (|a| |b|)):

    slerp(t; a, b) = sin((1 - t) theta) / sin(theta) * a  +  sin(t theta) / sin(theta) * b

t = 0 gives a, t = 1 gives b. The direction turns at a constant rate from a to b, and when
|a| = |b| every point keeps that norm, where linear interpolation shrinks it (by cos(theta / 2)
at t = 0.5: 0.71 for orthogonal vectors). When a and b are (anti)parallel, |cos theta| > 0.9995
(mergekit's threshold), sin(theta) is ~0 and the formula is ill-conditioned or undefined, so
the linear interpolation (1 - t) a + t b is used instead, as mergekit does; also when either is
zero (no direction). Computed in float64, stored in the weight's own dtype.

What is interpolated, per tensor:

- LoRA: the exact updates delta_W = scale * B @ A of the two trials (ranks may differ, as in
  `orchestrator.post.merging`): W = W0 + slerp(t; delta_W_a, delta_W_b). A module only one
  trial adapted has a zero update on the other side, so it is interpolated linearly.
- full fine-tuning: the task vectors tau = theta - theta0 against the base model's weights:
  theta = theta0 + slerp(t; tau_a, tau_b). Task vectors rather than the weights themselves
  (mergekit's choice): two fine-tunes of one base are nearly parallel as weights, where SLERP
  is linear interpolation, and the same rule then covers LoRA and full fine-tuning.
- classifier heads (LoRA's modules_to_save; a full fine-tune's `classifier` / `score` modules,
  the names peft's PeftModelForSequenceClassification uses) start from each trial's own random
  initialization, so they share no origin to measure an angle from: linear, (1 - t, t), as the
  other soups average them.

Memory: the pot of `orchestrator.post.merging` (base + both updates), plus for full
fine-tuning one copy of the base weights (the origin of the task vectors).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from orchestrator.post.merging import Pot

# mergekit's DOT_THRESHOLD: beyond it sin(theta) < 0.032 and SLERP is linear interpolation anyway
PARALLEL_COS = 0.9995
# peft's PeftModelForSequenceClassification: the modules of a new classification head
HEAD_MODULES = ("classifier", "score")


def slerp(t: float, a: torch.Tensor, b: torch.Tensor,
          parallel_cos: float = PARALLEL_COS) -> tuple[torch.Tensor, bool]:
    """slerp(t; a, b) in a's dtype, and whether it fell back to linear interpolation.

    >>> slerp(0.5, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))[0]
    tensor([0.7071, 0.7071])
    """
    if a.shape != b.shape:
        raise ValueError(f"slerp needs tensors of one shape, but got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    x, y = a.detach().double().flatten(), b.detach().double().flatten()
    norms = float(x.norm()) * float(y.norm())
    cos = float(x @ y) / norms if norms > 0 else 1.0
    if abs(cos) > parallel_cos:
        mixed, linear = (1.0 - t) * x + t * y, True
    else:
        theta = math.acos(max(-1.0, min(1.0, cos)))
        sin = math.sin(theta)
        mixed = (math.sin((1.0 - t) * theta) / sin) * x + (math.sin(t * theta) / sin) * y
        linear = False
    return mixed.reshape(a.shape).to(a.dtype), linear


def is_head(name: str) -> bool:
    """A parameter of a sequence-classification head (`classifier.weight`, `score.weight`)."""
    return any(part in HEAD_MODULES for part in name.split(".")[:-1])


@dataclass
class SlerpPot:
    """A two-ingredient pot and what SLERP measures its task vectors from."""

    pot: Pot
    lora: bool
    # full fine-tuning: the base values of the tensors interpolated as task vectors
    origin: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of(cls, pot: Pot, lora: bool) -> SlerpPot:
        """Call before the pot is first mixed: its model still holds the base weights."""
        if len(pot.ingredients) != 2:
            raise ValueError(f"SLERP interpolates two trials, but the pot has "
                             f"{len(pot.ingredients)}")
        origin: dict[str, torch.Tensor] = {}
        if not lora:
            state = pot.model.state_dict()
            origin = {name: state[name].detach().clone() for name in pot.tensor_names
                      if name in state and state[name].is_floating_point() and not is_head(name)}
        return cls(pot, lora, origin)

    @torch.no_grad()
    def mix(self, t: float) -> dict[str, int]:
        """Set the pot's model to SLERP at t (0: the first trial, 1: the second); returns how
        many tensors were interpolated spherically and how many linearly (parallel/zero) or as
        heads."""
        first, second = self.pot.ingredients
        counts = {"spherical": 0, "linear_parallel": 0, "linear_head": 0}
        for name, base in self.pot.base.items():
            deltas = [ing.lora[name].delta() if name in ing.lora else torch.zeros_like(base)
                      for ing in (first, second)]
            update, linear = slerp(t, deltas[0].to(base.dtype), deltas[1].to(base.dtype))
            counts["linear_parallel" if linear else "spherical"] += 1
            weight = self.pot.model.get_submodule(name).weight
            assert isinstance(weight, torch.Tensor), name
            weight.copy_(base + update)
        state: dict[str, torch.Tensor] = {}
        for name in self.pot.tensor_names:
            a, b = first.tensors[name], second.tensors[name]
            if not a.is_floating_point():
                state[name] = a
            elif name in self.origin:
                zero = self.origin[name]
                update, linear = slerp(t, a - zero.to(a.dtype), b - zero.to(a.dtype))
                state[name] = zero.to(a.dtype) + update
                counts["linear_parallel" if linear else "spherical"] += 1
            else:
                state[name] = (1.0 - t) * a + t * b
                counts["linear_head"] += 1
        if state:
            unexpected = self.pot.model.load_state_dict(state, strict=False).unexpected_keys
            if unexpected:
                raise RuntimeError(f"soup tensors do not fit the model: {unexpected[:3]}")
        return counts


def search_t(pair: SlerpPot, ts: Sequence[float], score: Any, better: Any
             ) -> tuple[float, dict[str, float], list[dict[str, Any]]]:
    """Mix at each t, score it (`score()` -> validation metrics, `better(new, old)` -> bool
    on those metrics); the pot ends mixed at the best t, the first one on ties."""
    best: tuple[float, dict[str, float]] | None = None
    steps: list[dict[str, Any]] = []
    for t in ts:
        counts = pair.mix(t)
        metrics = score()
        steps.append({"t": t, "validation": metrics, **counts})
        if best is None or better(metrics, best[1]):
            best = (t, metrics)
    assert best is not None, "search_t needs at least one t"
    if ts[-1] != best[0]:
        pair.mix(best[0])
    for step in steps:
        step["kept"] = step["t"] == best[0]
    return best[0], best[1], steps
