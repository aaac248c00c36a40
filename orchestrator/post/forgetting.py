"""The forgetting check: the tuned model's LM loss on general English text against the base
model's."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.post.errors import UnsupportedRequestError

if TYPE_CHECKING:
    from orchestrator.config.schema import SweepConfig

FORGETTING_TOLERANCE = 0.01  # relative change of the general-text loss counted as no change


def general_texts() -> list[str]:
    """The general-English sample shipped with the package (one sentence a line)."""
    text = resources.files("orchestrator").joinpath("data/general_text.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def forgetting_check(
    config: SweepConfig, checkpoint_dir: str | Path, texts: Sequence[str] | None = None,
    *, max_length: int = 128, batch_size: int = 8,
) -> dict[str, Any]:
    """Plain LM loss (mean over tokens) of the base and the tuned model on general text.

    `delta = tuned_loss - base_loss`: above 0, fine-tuning made the model worse at general
    English; `forgetting` is True when that is more than FORGETTING_TOLERANCE of the base loss.
    `checkpoint_dir` is a local folder (`SweepResult.local_checkpoint()`).
    Classifiers have no LM head to compare, so they are skipped with a reason.
    """
    if config.task != "causal_lm":
        return {"base_loss": None, "tuned_loss": None, "delta": None,
                "skipped": f"task {config.task!r} has no language-model head; forgetting is "
                           "measured for causal_lm only"}
    from orchestrator.experiment.checkpoints import load_checkpoint_model
    from trainables import modeling
    from trainables.evaluation import evaluate

    tokenizer = modeling.load_tokenizer(config.model)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded = [(tokenizer(t, add_special_tokens=False)["input_ids"] + eos)[:max_length]
               for t in (general_texts() if texts is None else texts)]
    examples = [{"input_ids": ids, "labels": ids} for ids in encoded if len(ids) > 1]
    if not examples:
        raise UnsupportedRequestError(
            "forgetting_check: no text long enough to score (each needs 2 tokens or more); give "
            "longer texts")

    def lm_loss(model: Any) -> float:
        return float(evaluate(model.eval(), examples, task="causal_lm", batch_size=batch_size,
                              pad_id=int(tokenizer.pad_token_id), device=model.device)["eval_loss"])

    # One model in memory at a time: the base first (attaching the adapter changes it in place).
    base_loss = lm_loss(modeling.load_model(config.model, "causal_lm",
                                            pad_token_id=tokenizer.pad_token_id))
    tuned_loss = lm_loss(load_checkpoint_model(config, Path(checkpoint_dir))[0])
    relative = (tuned_loss - base_loss) / base_loss
    return {"base_loss": base_loss, "tuned_loss": tuned_loss, "delta": tuned_loss - base_loss,
            "relative_delta": relative, "forgetting": relative > FORGETTING_TOLERANCE,
            "texts": len(examples), "tokens": sum(len(e["input_ids"]) - 1 for e in examples)}
