"""What a trial reads back from shared storage: no pickled code runs, and full weights that do
not fit the model are refused instead of silently resuming from the base weights."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from trainables import checkpointing
from trainables.checkpointing import MODEL_DIR, STATE_FILE, CheckpointMismatchError, Progress


class _Payload:
    """Pickles to a call that writes a marker file: what an attacker would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran"))


def _optimizer_and_scheduler() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([param], lr=1e-3)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def test_state_file_round_trips_with_weights_only(tmp_path: Path) -> None:
    optimizer, scheduler = _optimizer_and_scheduler()
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": None, "progress": {"step": 7, "epoch": 1, "batch_in_epoch": 3,
                                           "tokens_seen": 99},
             "rng": checkpointing.rng_state(), "rng_per_rank": None}
    torch.save(state, tmp_path / STATE_FILE)
    torch.set_rng_state(state["rng"]["torch"])
    expected = torch.rand(3)  # the draw that follows the saved state
    torch.rand(5)  # move the generator on; load_state must put it back
    progress = checkpointing.load_state(tmp_path, *_optimizer_and_scheduler())
    assert progress == Progress(step=7, epoch=1, batch_in_epoch=3, tokens_seen=99)
    assert torch.equal(torch.rand(3), expected)


def test_pickled_payload_in_trainer_state_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with (tmp_path / STATE_FILE).open("wb") as f:
        pickle.dump({"optimizer": _Payload(marker)}, f)
    with pytest.raises(pickle.UnpicklingError):
        checkpointing.load_state(tmp_path, *_optimizer_and_scheduler())
    assert not marker.exists()


def _full_checkpoint(tmp_path: Path, model: torch.nn.Module) -> Path:
    model.save_pretrained(tmp_path / "ckpt" / MODEL_DIR)  # type: ignore[operator]
    return tmp_path / "ckpt"


def test_full_weights_of_the_same_model_load(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    with torch.no_grad():
        for p in saved.parameters():
            p.add_(1.0)
    folder = _full_checkpoint(tmp_path, saved)
    fresh = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    checkpointing.load_weights(folder, fresh, "full")
    for (name, a), b in zip(saved.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_full_weights_of_another_model_are_refused(tiny_lm_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    folder = _full_checkpoint(tmp_path, AutoModelForCausalLM.from_pretrained(tiny_lm_dir))
    shard = next((folder / MODEL_DIR).glob("*.safetensors"))
    tensors = load_file(str(shard))
    dropped = sorted(k for k in tensors if "layers.1." in k)
    save_file({k: v for k, v in tensors.items() if k not in dropped}, str(shard))
    with pytest.raises(CheckpointMismatchError, match="lacks weights") as info:
        checkpointing.load_weights(folder, AutoModelForCausalLM.from_pretrained(tiny_lm_dir),
                                   "full")
    assert dropped[0] in str(info.value)
    save_file({**tensors, "extra.weight": torch.zeros(2)}, str(shard))
    with pytest.raises(CheckpointMismatchError, match="does not: \\['extra.weight'\\]"):
        checkpointing.load_weights(folder, AutoModelForCausalLM.from_pretrained(tiny_lm_dir),
                                   "full")
