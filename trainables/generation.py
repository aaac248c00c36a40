"""Greedy generation: the `train.generation_eval` metric, and what `sweep predict` prints.

Scoring a causal LM by its loss says how likely the reference completion is, not whether the
model, left to itself, writes the right answer. `generation_metrics` generates a completion for
a fixed sample of validation prompts (`PreparedData.generation_validation`, drawn once with
`data.split_seed`, so every trial and every evaluation scores the same rows) and reports the
share whose final answer (`#### N`) matches: `eval_exact_match`, with the sample's size,
`eval_generation_examples` (how noisy it is: one example of 16 moves it 6.25 points).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from trainables.config import GenerationEvalConfig
from trainables.metrics import exact_match


@torch.no_grad()
def generate(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    pad_id: int,
    eos_id: int | None,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    temperature: float = 0.0,
    autocast: Callable[[], Any] | None = None,
) -> list[list[int]]:
    """The new tokens generated after each prompt, up to (without) the first EOS.

    Prompts are left-padded in batches, so every row's next token sits at the same position;
    `temperature` 0 is greedy decoding (deterministic), above 0 samples.
    """
    was_training = model.training
    model.eval()
    out: list[list[int]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, prompt in enumerate(chunk):
            ids[i, width - len(prompt):] = torch.tensor(list(prompt), dtype=torch.long)
            mask[i, width - len(prompt):] = 1
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {
            "do_sample": False}
        with autocast() if autocast else contextlib.nullcontext():
            generated = model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id,
                **sampling,
            )
        for row in generated[:, width:].tolist():
            if eos_id is not None and eos_id in row:
                row = row[: row.index(eos_id)]
            out.append(row)
    if was_training:
        model.train()
    return out


def generation_metrics(
    model: Any,
    samples: Sequence[dict[str, Any]],
    tokenizer: Any,
    config: GenerationEvalConfig,
    *,
    batch_size: int,
    device: torch.device,
    autocast: Callable[[], Any] | None = None,
) -> dict[str, float]:
    """`eval_exact_match` over `samples` ({"prompt_ids", "answer"} rows, see `prepare_data`)
    and `eval_generation_examples`; `batch_size` applies unless the config sets its own."""
    if not samples:
        return {}
    new_tokens = generate(
        model, [s["prompt_ids"] for s in samples], pad_id=int(tokenizer.pad_token_id),
        eos_id=tokenizer.eos_token_id, max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size or batch_size, device=device, autocast=autocast,
    )
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return {"eval_exact_match": exact_match(texts, [s["answer"] for s in samples]),
            "eval_generation_examples": len(samples)}
