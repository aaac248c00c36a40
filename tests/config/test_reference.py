"""The README's config reference is generated from the models and must be current."""

from pathlib import Path

from orchestrator.config.reference import BEGIN, END, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_reference_is_current() -> None:
    text = README.read_text()
    current = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert current == render(), "run `python -m orchestrator.config.reference --write`"


def test_reference_names_every_train_and_lora_field() -> None:
    from trainables.config import LoraConfig, TrainConfig

    rendered = render()
    for model in (TrainConfig, LoraConfig):
        for name in model.model_fields:
            assert f"| `{name}` |" in rendered
