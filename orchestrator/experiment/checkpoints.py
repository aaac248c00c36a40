"""Read a trial's checkpoint back: the trial's own spec, and the model it saved.

Whether a checkpoint holds a LoRA adapter or full weights is the trial's `train.finetune`
value, as written into the checkpoint's `spec.json` by the trial itself (it may be searched, so
the sweep config alone does not say).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.config.schema import SweepConfig
from trainables import modeling
from trainables.checkpointing import ADAPTER_DIR, MODEL_DIR, SPEC_FILE
from trainables.config import TrialSpec


def checkpoint_spec(checkpoint: Path) -> TrialSpec:
    """The `TrialSpec` the trial that wrote this checkpoint ran with."""
    return TrialSpec.model_validate_json((checkpoint / SPEC_FILE).read_text())


def is_lora_checkpoint(checkpoint: Path) -> bool:
    return checkpoint_spec(checkpoint).train.finetune == "lora"


def load_checkpoint_model(
    config: SweepConfig, checkpoint: Path, device: str = "cpu"
) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode. LoRA: the base model with the adapter attached."""
    tokenizer = modeling.load_tokenizer(config.model)
    spec = checkpoint_spec(checkpoint)
    num_labels = spec.num_labels
    model: Any
    if spec.train.finetune == "lora":
        from peft import PeftModel

        base = modeling.load_model(
            config.model, config.task, num_labels=num_labels,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = PeftModel.from_pretrained(base, checkpoint / ADAPTER_DIR)
    else:
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        auto = (AutoModelForCausalLM if config.task == "causal_lm"
                else AutoModelForSequenceClassification)
        model = auto.from_pretrained(checkpoint / MODEL_DIR)
    return model.to(device).eval(), tokenizer
