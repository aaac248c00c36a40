"""Read a trial's checkpoint back: the trial's own spec, and the model it saved.

Whether a checkpoint holds a LoRA adapter or full weights is the trial's `train.finetune`
value, as written into the checkpoint's `spec.json` by the trial itself (it may be searched, so
the sweep config alone does not say).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.config.schema import SweepConfig
from orchestrator.experiment.errors import BrokenCheckpointError, CheckpointNotFoundError
from trainables import modeling
from trainables.checkpointing import ADAPTER_DIR, METRICS_FILE, MODEL_DIR, SPEC_FILE
from trainables.config import STORED, TrialSpec

_FIX = ("restore the folder from where the sweep wrote it, or delete it: post-sweep commands "
        "then pass over its trial")


def _json_text(checkpoint: Path, name: str, where: str | None = None) -> str:
    """The text of a JSON file of the checkpoint; BrokenCheckpointError when it is missing or
    cut off."""
    where = where or str(checkpoint)
    try:
        text = (checkpoint / name).read_text()
        json.loads(text)
        return text
    except FileNotFoundError:
        raise BrokenCheckpointError(f"checkpoint {where} has no {name}; {_FIX}") from None
    except ValueError as err:  # not JSON (cut off), or not text
        raise BrokenCheckpointError(
            f"checkpoint {where}: {name} is not readable JSON ({err}); {_FIX}") from None


def checkpoint_spec(checkpoint: Path, where: str | None = None) -> TrialSpec:
    """The `TrialSpec` the trial that wrote this checkpoint ran with, validated as stored (rules
    added since the trial ran are not applied to it); BrokenCheckpointError when spec.json does
    not hold one."""
    text = _json_text(checkpoint, SPEC_FILE, where)
    try:
        return TrialSpec.model_validate_json(text, context={STORED: True})
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f", and {err.error_count() - 1} more" if err.error_count() > 1 else ""
        raise BrokenCheckpointError(
            f"checkpoint {where or checkpoint}: {checkpoint / SPEC_FILE} is not a trial spec "
            f"this version reads ({field}: {first['msg']}{more}): edited, or written by another "
            f"version; {_FIX}"
        ) from None


def require_complete(checkpoint: Path, where: str | None = None) -> Path:
    """`checkpoint`, once it is known to hold what every checkpoint has and post-sweep commands
    read: spec.json and metrics.json as JSON, and its weights (adapter/ or model/).

    `where`: how to name it in an error (its URI, its trial), if not by its local path.
    """
    where = where or str(checkpoint)
    if not checkpoint.is_dir():
        raise CheckpointNotFoundError(
            f"checkpoint {where} is gone (deleted since the sweep?); `sweep results "
            "EXPERIMENT` lists the trials, and post-sweep commands pass over one whose "
            "checkpoint folder is gone")
    missing = [name for name in (SPEC_FILE, METRICS_FILE) if not (checkpoint / name).is_file()]
    if not missing:
        _json_text(checkpoint, METRICS_FILE, where)
        lora = checkpoint_spec(checkpoint, where).train.finetune == "lora"
        weights = ADAPTER_DIR if lora else MODEL_DIR
        if not (checkpoint / weights).is_dir():
            missing.append(f"{weights}/")
    if missing:
        raise BrokenCheckpointError(
            f"checkpoint {where} is incomplete: no {', '.join(missing)} (deleted, or copied "
            f"in part); {_FIX}")
    return checkpoint


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
            pad_token_id=tokenizer.pad_token_id, label_names=spec.label_names,
        )
        model = PeftModel.from_pretrained(base, checkpoint / ADAPTER_DIR)
    else:
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        auto = (AutoModelForCausalLM if config.task == "causal_lm"
                else AutoModelForSequenceClassification)
        model = auto.from_pretrained(checkpoint / MODEL_DIR)
    return model.to(device).eval(), tokenizer
