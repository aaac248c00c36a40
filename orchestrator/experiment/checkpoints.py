"""Read a trial's checkpoint back as a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config.schema import SweepConfig
from trainables import modeling
from trainables.checkpointing import ADAPTER_DIR, MODEL_DIR, SPEC_FILE

if TYPE_CHECKING:
    pass


def load_checkpoint_model(
    config: SweepConfig, checkpoint: Path, device: str = "cpu"
) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode. LoRA: the base model with the adapter attached."""
    tokenizer = modeling.load_tokenizer(config.model)
    num_labels = json.loads((checkpoint / SPEC_FILE).read_text()).get("num_labels")
    model: Any
    if (checkpoint / ADAPTER_DIR).exists():
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
