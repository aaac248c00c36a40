"""The config reference, generated from the config models so it never drifts from the code.

    python -m orchestrator.config.reference          # print the Markdown reference
    python -m orchestrator.config.reference --write  # refresh it in README.md, between the markers
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from orchestrator.config.schema import (
    Choice,
    Grid,
    LogUniform,
    QUniform,
    RandInt,
    ResourcesConfig,
    SchedulerConfig,
    SearchConfig,
    SweepConfig,
    Uniform,
)
from orchestrator.config.sections import LoggingConfig, MLflowConfig, QualityConfig
from trainables.config import (
    DataConfig,
    DistillConfig,
    GenerationEvalConfig,
    LoraConfig,
    ModelConfig,
    TextLabelFiles,
    TrainConfig,
)

BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("top level", SweepConfig), ("model", ModelConfig), ("data", DataConfig),
    ("data split as {text, labels}", TextLabelFiles), ("train", TrainConfig),
    ("train.generation_eval", GenerationEvalConfig), ("lora", LoraConfig),
    ("distill", DistillConfig),
    ("search", SearchConfig), ("scheduler", SchedulerConfig),
    ("resources", ResourcesConfig), ("logging", LoggingConfig), ("logging.mlflow", MLflowConfig),
    ("quality", QualityConfig),
]
NESTED = {"model", "data", "train", "lora", "distill", "search", "scheduler", "resources",
          "logging", "quality"}


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " / ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    value = field.default_factory() if field.default_factory else field.default
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{value!r}`"


def _constraints(field: Any) -> str:
    rules = []
    for meta in field.metadata:
        for name, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(meta, name, None) is not None:
                rules.append(f"{sign} {getattr(meta, name)}")
    return ", ".join(rules)


def render() -> str:
    out = [BEGIN, ""]
    for title, model in SECTIONS:
        out += [f"#### `{title}`", "", "| key | type | default | rule | what it does |",
                "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            if model is SweepConfig and name in NESTED:
                continue
            doc = (field.description or "").replace("|", "\\|").replace("\n", " ")
            kind = _type_name(field.annotation)
            out.append(f"| `{name}` | {kind} | "
                       f"{_default(field)} | {_constraints(field)} | {doc} |")
        out.append("")
    out += ["#### `search_space` dimensions", "",
            "Keys are `train.FIELD`, `lora.FIELD` or `distill.FIELD`; any field of `train` "
            "and `lora` can be searched, and `distill`'s alpha, temperature and kl.",
            "", "| type | keys |", "|---|---|"]
    for dim in (LogUniform, Uniform, QUniform, RandInt, Choice, Grid):
        keys = ", ".join(f"`{k}`" for k in dim.model_fields if k != "type")
        tag = dim.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
        out.append(f"| `{tag}` | {keys} |")
    out += ["", END]
    return "\n".join(out)


def refresh_readme(readme: Path) -> bool:
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    updated = text[:start] + render() + text[end:]
    readme.write_text(updated)
    return updated != text


if __name__ == "__main__":
    if "--write" in sys.argv:
        changed = refresh_readme(Path(__file__).resolve().parents[2] / "README.md")
        print("README.md updated" if changed else "README.md already current")
    else:
        print(render())
