"""Load a sweep config from YAML, a dict or an object; apply `--set` overrides; report every
problem at once, each naming the field path, the bad value and the fix."""

from __future__ import annotations

import copy
import logging
import re
import time
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.config.errors import ConfigError, closest, did_you_mean
from orchestrator.config.schema import DIMENSION_TYPES, SweepConfig
from trainables.config import STORED

ConfigSource = str | Path | dict | SweepConfig
log = logging.getLogger(__name__)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` (no dot) as a string; sweep configs are full of such numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
               r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _mapping_without_duplicates(loader: _Loader, node: yaml.MappingNode, deep: bool = False
                                ) -> dict[Any, Any]:
    """A YAML mapping, refusing a key given twice (YAML would silently keep the last one)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        line = key_node.start_mark.line + 1
        if key in seen:
            raise DuplicateKeyError(
                f"key {key!r} is given twice in the same mapping (lines {seen[key]} and {line}); "
                "the second would silently replace the first: merge them into one"
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


class DuplicateKeyError(yaml.YAMLError):
    """A mapping repeats a key."""


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                        _mapping_without_duplicates)  # type: ignore[arg-type]


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    # search_space keys themselves contain a dot: `search_space.train.learning_rate.low`.
    if head == "search_space" and rest:
        section, _, remainder = rest.partition(".")
        field, _, sub = remainder.partition(".")
        key = f"{section}.{field}"
        space = tree.setdefault("search_space", {})
        if sub:
            _set_dotted(space.setdefault(key, {}), sub, value)
        else:
            space[key] = value
        return
    if not rest:
        tree[head] = value
        return
    child = tree.setdefault(head, {})
    if not isinstance(child, dict):
        raise ConfigError([f"--set {dotted}: {head!r} is not a section"])
    _set_dotted(child, rest, value)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                [f"--set {item!r}: expected KEY=VALUE, e.g. train.learning_rate=1e-4"]
            )
        _set_dotted(raw, key.strip(), read_yaml(text))
    return raw


def _unwrap(annotation: Any, key: Any) -> Any:
    """The model (or dict value type) one step below `annotation`, following `key`."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0], key)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        for option in options:  # a discriminated union: pick the member named by the tag
            fields = getattr(option, "model_fields", {})
            tag = fields.get("type")
            if tag is not None and key in typing.get_args(tag.annotation):
                return option
        models = [o for o in options if isinstance(o, type) and issubclass(o, BaseModel)]
        return models[0] if models else None
    if origin is dict:
        return typing.get_args(annotation)[1]
    return annotation


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The config model that holds the fields at `loc` (a section, a dimension...)."""
    current: Any = SweepConfig
    for key in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(key))
            current = field.annotation if field else None
        else:
            current = _unwrap(current, key)
        if current is None:
            return None
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        current = _unwrap(current, loc[-1] if loc else None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _known_fields(loc: tuple) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model is not None else []


def _not_finite(path: str, loc: tuple, value: Any) -> str:
    """NaN or infinity; where the field takes null, say what null means there."""
    model = _model_at(loc[:-1])
    field = model.model_fields.get(str(loc[-1])) if model is not None and loc else None
    nullable = field is not None and type(None) in typing.get_args(field.annotation)
    hint = f", or null ({field.description})" if nullable and field is not None else ""
    return f"{path}: {value} is not a finite number; write a number{hint}"


def _homes(key: str, section: tuple) -> list[str]:
    """Where else `key` is a field: `train.learning_rate` for a top-level `learning_rate`."""
    if len(section) > 1:
        return []
    homes = [f"{name}.{key}" for name, field in SweepConfig.model_fields.items()
             if (name,) != section and isinstance(field.annotation, type)
             and issubclass(field.annotation, BaseModel) and key in field.annotation.model_fields]
    if section and key in SweepConfig.model_fields:
        homes.append(f"the top level ({key}: ...)")
    return homes


def _dimension_problem(path: str, key: str, kind: str, error: Any) -> str | None:
    """A search_space entry that is not a dimension, in words instead of pydantic's."""
    example = "{type: loguniform, low: 1e-5, high: 1e-3}"
    types_ = ", ".join(repr(t) for t in DIMENSION_TYPES)
    if kind == "union_tag_invalid":
        tag = str((error.get("ctx") or {}).get("tag"))
        return (f"{path}: unknown type {tag!r}{did_you_mean(tag, DIMENSION_TYPES)}; use one of "
                f"{types_}")
    if kind == "union_tag_not_found":
        return f"{path}: needs a `type`, one of {types_}; e.g. {example}"
    if kind == "model_attributes_type":
        value = error.get("input")
        if isinstance(value, list):
            return (f"{path}: {value!r} is not a dimension; to try these values write "
                    f"{{type: choice, values: {value!r}}}")
        return (f"{path}: {value!r} is not a dimension; a dimension is a mapping such as "
                f"{example}; to fix the value instead, set {key} outside search_space")
    return None


def _union_member_models(annotation: Any, in_union: bool = False,
                         seen: set[type] | None = None) -> set[str]:
    """The class names of the models that are members of a plain (not discriminated) union
    somewhere under `annotation`: pydantic puts them in an error's location
    (`data.train.TextLabelFiles.labels`), where the user wrote no such key."""
    seen = set() if seen is None else seen
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        if any(getattr(m, "discriminator", None) for m in args[1:]):
            # a discriminated union's location holds the tag (`loguniform`), not a class name
            return {name for a in typing.get_args(args[0])
                    for name in _union_member_models(a, False, seen)}
        return _union_member_models(args[0], in_union, seen)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return {name for a in members
                for name in _union_member_models(a, in_union or len(members) > 1, seen)}
    if origin is not None:  # list[...], dict[...]
        return {name for a in args for name in _union_member_models(a, False, seen)}
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return set()
    names = {annotation.__name__} if in_union else set()
    if annotation not in seen:
        seen.add(annotation)
        for field in annotation.model_fields.values():
            names |= _union_member_models(field.annotation, False, seen)
    return names


_UNION_MEMBER_MODELS = frozenset(_union_member_models(SweepConfig))


def _format(error: Any) -> list[str]:
    """One line per problem; a cross-field check may carry several, one per line."""
    # A union member's class name in the location is pydantic's bookkeeping, not a key the
    # user wrote; a key the user wrote stays, capitalised or not (`Train:`).
    loc = tuple(p for p in error["loc"] if p not in _UNION_MEMBER_MODELS)
    kind = error["type"]
    if kind == "string_type" and error["loc"][-1:] == ("str",) and isinstance(
            error.get("input"), dict):
        return []  # a mapping where a string or a model goes: the model's own errors say why
    path = ".".join(str(p) for p in loc) or "(top level)"
    if kind == "extra_forbidden":
        options = _known_fields(loc[:-1])
        homes = _homes(str(loc[-1]), loc[:-1])
        if homes:
            return [f"{path}: unknown key here; it belongs at {' or '.join(homes)} (move it)"]
        close = closest(str(loc[-1]), options)
        hint = f"did you mean {close!r}?" if close else f"valid keys: {', '.join(options)}"
        return [f"{path}: unknown key ({hint})"]
    if kind == "finite_number":
        return [_not_finite(path, loc, error.get("input"))]
    if loc[:1] == ("search_space",) and len(loc) == 2:
        dimension = _dimension_problem(path, str(loc[1]), kind, error)
        if dimension is not None:
            return [dimension]
    if kind == "missing":
        return [f"{path}: required, but missing; add it"]
    msg = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return msg.splitlines()
    if kind == "value_error":
        lines = msg.splitlines()
        if all(line.startswith((f"{path}.", f"{path}:")) for line in lines):
            return lines  # a section's own cross-field check names the full path itself
        return [f"{path}: {msg}"]
    return [f"{path}: {msg} (got {error.get('input')!r})"]


def validate_dict(raw: dict, source: str = "sweep config", *, stored: bool = False
                  ) -> SweepConfig:
    """`stored=True`: the config an experiment saved, read back (`sweep results`, `resume`,
    `export`...): the rules that refuse a new sweep as pointless are skipped
    (`trainables.config.is_stored`), so an experiment made before a rule stays readable."""
    try:
        return SweepConfig.model_validate(raw, context={STORED: True} if stored else None)
    except ValidationError as err:
        raise ConfigError([line for e in err.errors() for line in _format(e)], source) from None


def load_config(source: ConfigSource, overrides: list[str] | None = None) -> SweepConfig:
    """A validated `SweepConfig` from a YAML path, a dict or a config object; settings it
    would ignore are logged as warnings.

    >>> cfg = load_config("examples/quickstart.yaml", ["train.max_steps=20"])  # doctest: +SKIP
    """
    if isinstance(source, SweepConfig) and not overrides:
        return source  # loaded (and warned about) already
    config = _load_config(source, overrides or [])
    for note in config.ignored_settings():
        log.warning("%s; drop it to silence this warning", note)
    return config


def _load_config(source: ConfigSource, overrides: list[str]) -> SweepConfig:
    if isinstance(source, SweepConfig):
        return validate_dict(apply_overrides(source.model_dump(exclude_none=True), overrides))
    if isinstance(source, dict):
        return validate_dict(apply_overrides(copy.deepcopy(source), overrides))
    path = Path(source)
    if not path.exists():
        raise ConfigError([f"config file {str(path)!r} does not exist"])
    if path.is_dir():
        raise ConfigError([f"config file {str(path)!r} is a folder; give the YAML file in it"])
    try:
        raw = read_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise ConfigError([f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at "
                           f"offset {err.start}); re-save it as UTF-8"]) from None
    except DuplicateKeyError as err:
        raise ConfigError([f"{path}: {err}"]) from None
    except yaml.YAMLError as err:
        raise ConfigError([f"{path}: not valid YAML: {err}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: top level must be a mapping of sections, got {type(raw)}"])
    raw = apply_overrides(raw, overrides)
    config = validate_dict(raw, source=str(path))
    if config.base_dir is None:
        config.base_dir = str(path.resolve().parent)
    if config.name is None:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "sweep"
        config.name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    return config
