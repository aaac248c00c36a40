"""A checkpoint says LoRA or full fine-tuning through the trial's own spec, not its folders."""

from __future__ import annotations

from pathlib import Path

from orchestrator.experiment.checkpoints import checkpoint_spec, is_lora_checkpoint
from trainables.checkpointing import ADAPTER_DIR, SPEC_FILE
from trainables.config import TrialSpec


def _checkpoint(folder: Path, finetune: str) -> Path:
    spec = TrialSpec(task="causal_lm", model={"path": "m"}, data={"train": "t.jsonl"},
                     train={"finetune": finetune})
    folder.mkdir(parents=True)
    (folder / SPEC_FILE).write_text(spec.model_dump_json())
    return folder


def test_finetune_comes_from_the_spec_not_from_an_adapter_folder(tmp_path: Path) -> None:
    full = _checkpoint(tmp_path / "full", "full")
    (full / ADAPTER_DIR).mkdir()  # a stray folder must not turn it into a LoRA checkpoint
    lora = _checkpoint(tmp_path / "lora", "lora")  # no adapter folder: still LoRA by its spec
    assert is_lora_checkpoint(full) is False
    assert is_lora_checkpoint(lora) is True
    assert checkpoint_spec(full).train.finetune == "full"
