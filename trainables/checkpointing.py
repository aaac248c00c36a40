"""Trial checkpoints: adapter-only for LoRA, plus everything needed to resume exactly.

Layout of a checkpoint folder:
    adapter/           peft `save_pretrained` output (LoRA), never the base weights
    model/             full weights (full fine-tuning only)
    trainer_state.pt   optimizer, LR schedule, step, data position, RNG states: tensors and
                       plain Python values only, read with `torch.load(weights_only=True)`, so
                       a file planted on shared storage cannot run code in the trial
    metrics.json       the metrics reported with this checkpoint
    manifest.json      sha256 of every file above, written last: a checkpoint without a
                       matching manifest is torn (the writer died mid-way) and is skipped
    spec.json          the trial's full settings (model, data, train, lora, num_labels), so the
                       checkpoint loads back on its own
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
STATE_FILE = "trainer_state.pt"
METRICS_FILE = "metrics.json"
SPEC_FILE = "spec.json"
MANIFEST_FILE = "manifest.json"


@dataclass
class Progress:
    """Where training stands; restored as-is so a resumed trial continues exactly."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed
    tokens_seen: int = 0


def save(
    folder: Path,
    *,
    model: torch.nn.Module,
    finetune: str,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: Progress,
    metrics: dict[str, float],
    spec: dict[str, Any],
    scaler: Any = None,
    rng_per_rank: list[dict[str, Any]] | None = None,
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """`rng_per_rank`: every data-parallel rank's RNG state (rank 0's is also `rng`).
    `model_state`, `optimizer_state`: the full states gathered from a sharded (FSDP) model,
    written in place of the model's and optimizer's own (which hold one shard each)."""
    folder.mkdir(parents=True, exist_ok=True)
    if finetune == "lora":
        model.save_pretrained(folder / ADAPTER_DIR)  # type: ignore[operator]
    else:
        if model_state is not None:  # tied weights once, as save_pretrained writes its own
            tied = tied_names(model)
            model_state = {k: v for k, v in model_state.items() if k not in tied}
        model.save_pretrained(folder / MODEL_DIR, state_dict=model_state)  # type: ignore[operator]
    state = {
        "optimizer": optimizer.state_dict() if optimizer_state is None else optimizer_state,
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "progress": asdict(progress),
        "rng": rng_state(),
        "rng_per_rank": rng_per_rank,
    }
    torch.save(state, folder / STATE_FILE)
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    write_manifest(folder)


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain values (numpy's key array as a list), so the
    state file loads with `weights_only=True`."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python": random.getstate(),
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    }


def _set_numpy_state(state: list[Any]) -> None:
    kind, keys, pos, has_gauss, cached = state
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_FILE
    }


def write_manifest(folder: Path) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(_digests(folder), indent=1))


def verify(folder: Path) -> str | None:
    """None if the checkpoint is complete and intact, else what is wrong with it."""
    manifest = folder / MANIFEST_FILE
    if not manifest.exists():
        return "no manifest (torn write)"
    try:
        expected = json.loads(manifest.read_text())
    except ValueError:
        return "unreadable manifest"
    actual = _digests(folder)
    missing = sorted(set(expected) - set(actual))
    if missing:
        return f"missing files {missing}"
    changed = sorted(k for k in expected if expected[k] != actual[k])
    return f"corrupt files {changed}" if changed else None


def load_weights(folder: Path, model: torch.nn.Module, finetune: str) -> None:
    from safetensors.torch import load_file

    if finetune == "lora":
        from peft import set_peft_model_state_dict

        weights = load_file(str(folder / ADAPTER_DIR / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(model, weights)
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise RuntimeError(f"checkpoint {folder} does not fit this model: {unexpected[:3]}")
    else:
        # save_pretrained may shard large models; every shard holds a disjoint set of tensors.
        shards = sorted((folder / MODEL_DIR).glob("*.safetensors"))
        if not shards:
            raise FileNotFoundError(f"checkpoint {folder} has no {MODEL_DIR}/*.safetensors")
        loaded: set[str] = set()
        for shard in shards:
            tensors = load_file(str(shard))
            unexpected = model.load_state_dict(tensors, strict=False).unexpected_keys
            if unexpected:
                raise CheckpointMismatchError(
                    f"checkpoint {folder} has weights this model does not: {unexpected[:5]}; "
                    "it was written by another model, so the trial cannot resume from it")
            loaded |= set(tensors)
        missing = _missing_keys(model, loaded)
        if missing:
            raise CheckpointMismatchError(
                f"checkpoint {folder} lacks weights of this model: {missing[:5]}; resuming "
                "would train from the base weights with the restored optimizer, so it is refused")


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights do not fit the model the trial built."""


def tied_names(model: torch.nn.Module) -> dict[str, str]:
    """Parameter name -> the name it is tied to (an LM head sharing the embedding), which
    save_pretrained writes only once."""
    first: dict[int, str] = {}
    tied: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            tied[name] = first[id(param)]
        else:
            first[id(param)] = name
    return tied


def read_full_weights(folder: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A full fine-tuning checkpoint's weights as one state dict keyed like the model's, tied
    names filled in: what a sharded (FSDP) model loads in one call. Refuses weights that do
    not fit the model, like `load_weights`."""
    from safetensors.torch import load_file

    shards = sorted((folder / MODEL_DIR).glob("*.safetensors"))
    if not shards:
        raise FileNotFoundError(f"checkpoint {folder} has no {MODEL_DIR}/*.safetensors")
    weights: dict[str, torch.Tensor] = {}
    for shard in shards:
        weights |= load_file(str(shard))
    for name, source in tied_names(model).items():
        if name not in weights and source in weights:
            weights[name] = weights[source]
        elif source not in weights and name in weights:
            weights[source] = weights[name]
    expected = set(model.state_dict())
    unexpected = sorted(set(weights) - expected)
    if unexpected:
        raise CheckpointMismatchError(
            f"checkpoint {folder} has weights this model does not: {unexpected[:5]}; it was "
            "written by another model, so the trial cannot resume from it")
    missing = sorted(expected - set(weights))
    if missing:
        raise CheckpointMismatchError(
            f"checkpoint {folder} lacks weights of this model: {missing[:5]}; resuming would "
            "train from the base weights with the restored optimizer, so it is refused")
    return weights


def _missing_keys(model: torch.nn.Module, loaded: set[str]) -> list[str]:
    """Model weights no shard provided; weights tied to a loaded one (an LM head sharing the
    embedding, which save_pretrained writes once) are not missing."""
    state = model.state_dict()
    loaded_storage = {state[k].data_ptr() for k in loaded if k in state}
    return sorted(k for k, v in state.items()
                  if k not in loaded and v.data_ptr() not in loaded_storage)


def read_state(source: Path | bytes) -> dict[str, Any]:
    """A checkpoint folder's STATE_FILE, or its bytes, as a dict."""
    # weights_only: tensors and plain containers only; a pickled object is refused, not run.
    return torch.load(  # type: ignore[no-any-return]
        source / STATE_FILE if isinstance(source, Path) else io.BytesIO(source), weights_only=True
    )


def load_state(
    source: Path | bytes | dict[str, Any], optimizer: torch.optim.Optimizer | None,
    scheduler: Any, scaler: Any = None, rank: int = 0,
) -> Progress:
    """Restore from a checkpoint folder, or from its STATE_FILE's bytes (what rank 0 sends the
    other data-parallel ranks, which cannot see its copy of the checkpoint), or from the state
    `read_state` returned. `optimizer=None`: the caller restores the optimizer itself (FSDP
    loads rank 0's full optimizer state into every rank's shards)."""
    state = source if isinstance(source, dict) else read_state(source)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    per_rank = state.get("rng_per_rank") or []
    rng = per_rank[rank] if rank < len(per_rank) else state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate(rng["python"])
    _set_numpy_state(rng["numpy"])
    return Progress(**state["progress"])
