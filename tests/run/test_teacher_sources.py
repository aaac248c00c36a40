"""Teachers from each source `distill.teacher` takes, loaded as the teacher pass loads them
(`load_teacher`, no Ray): a model folder, and a causal LM's LoRA adapter export (merged onto
its base), which must predict exactly what the adapter on its base predicts."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import make_tiny_causal_lm

from orchestrator.run.teacher import check_teacher, load_teacher
from trainables.config import DistillConfig
from trainables.data import PreparedData


def _adapter_export(base: Path, out: Path) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                      init_lora_weights=False))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return model.eval()


def test_a_causal_lm_adapter_export_teaches_as_the_adapter_on_its_base(tmp_path: Path,
                                                                        make_config) -> None:
    base = make_tiny_causal_lm(tmp_path / "base")
    adapted = _adapter_export(base, tmp_path / "export")
    assert not (tmp_path / "export" / "config.json").exists()  # an adapter folder, not a model
    model, tokenizer, info = load_teacher(DistillConfig(teacher=str(tmp_path / "export")),
                                          "causal_lm", None)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, adapted(input_ids=ids).logits)
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert tokenizer.get_vocab()
    config = make_config(model={"path": str(base)},
                         distill={"teacher": str(tmp_path / "export")})
    data = PreparedData(task="causal_lm", train=[], validation=[])
    assert check_teacher(config, data, tokenizer) == []


def test_a_model_folder_teacher(tmp_path: Path) -> None:
    folder = make_tiny_causal_lm(tmp_path / "t", seed=2)
    model, _, info = load_teacher(DistillConfig(teacher="t"), "causal_lm", str(tmp_path))
    assert info["teacher"] == "t" and not model.training  # read from base_dir, in eval mode
    assert type(model).__name__ == "LlamaForCausalLM" and folder.exists()
