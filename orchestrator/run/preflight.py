"""Checks that need the model, the data or the cluster, run before any trial starts.

`sweep validate` runs them without training; `launch` runs them and keeps what they built
(tokenized data, the fast-loading model folder) so the sweep never does that work twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from orchestrator.config.errors import ConfigError, did_you_mean
from orchestrator.config.schema import Choice, Grid, SweepConfig
from orchestrator.run.logging_callbacks import check_logging
from orchestrator.run.teacher import check_teacher
from trainables import modeling
from trainables.config import TrialSpec
from trainables.data import DataError, PreparedData, prepare_data
from trainables.loop import optimizer_steps
from trainables.metrics import metric_label_keys, per_class_metric


@dataclass
class Plan:
    """What the driver prepared once for the whole sweep."""

    spec: TrialSpec  # what every trial shares; each merges its sampled values into it
    data: PreparedData
    pad_id: int
    max_steps: int  # the most optimizer steps any sampled config can take
    tokens_per_step: float


def _local_model_path(config: SweepConfig) -> str | None:
    path = config.model.path
    if path.startswith("pkg://"):
        return path
    candidate = Path(config.base_dir or ".") / os.path.expanduser(path)
    if modeling.is_local(path) or candidate.exists():
        return str(candidate.resolve())
    return None  # a hub id


def check_model(config: SweepConfig) -> list[str]:
    local = _local_model_path(config)
    if local is None:
        return _check_hub_model(config)
    try:
        folder = Path(modeling.resolve_model_path(local))
    except FileNotFoundError as err:
        return [str(err)]
    if folder.is_file():
        return [f"model.path: {str(folder)!r} is a file, not a folder; point it at the folder "
                "that holds config.json and the weights"]
    if not folder.is_dir():
        return [
            f"model.path: {config.model.path!r} does not exist (looked in {str(folder)!r}); "
            "give an existing folder, a hub id, or pkg://PACKAGE/folder"
        ]
    if config.model.gguf_file and not (folder / config.model.gguf_file).exists():
        present = sorted(p.name for p in folder.glob("*.gguf"))
        return [f"model.gguf_file: {config.model.gguf_file!r} is not in {str(folder)!r}; "
                f"GGUF files there: {present}"]
    if not config.model.gguf_file and not (folder / "config.json").exists():
        return [f"model.path: {str(folder)!r} has no config.json; point it at a folder saved "
                "with save_pretrained, or set model.gguf_file"]
    if not config.model.gguf_file and not any(
            any(folder.glob(pattern)) for pattern in _WEIGHT_FILES):
        return [f"model.path: {str(folder)!r} has config.json but no weights (*.safetensors, "
                "pytorch_model.bin); save the model into it with save_pretrained, or point at "
                "the folder that has them"]
    config.model.path = str(folder) if not local.startswith("pkg://") else local
    return []


_WEIGHT_FILES = ("*.safetensors", "*.bin", "*.index.json", "*.h5", "*.msgpack")


def _check_hub_model(config: SweepConfig) -> list[str]:
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(
            config.model.path, revision=config.model.revision,
            trust_remote_code=config.model.trust_remote_code,
        )
    except Exception as err:  # OSError for missing repos, connection errors offline
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        folder = Path(config.base_dir or ".") / os.path.expanduser(config.model.path)
        return [f"model.path: hub model {config.model.path!r} is not reachable ({first_line}); "
                "check the id, your network and HF_TOKEN, or use a local folder (there is no "
                f"folder {str(folder)!r} either)"]
    return []


def check_lora_targets(config: SweepConfig) -> list[str]:
    """Every name in `lora.target_modules` (fixed or searched) must match a linear module of
    the model; a name that matches nothing would leave those layers silently untrained."""
    searched = config.search_space.get("lora.target_modules")
    candidates: list[Any] = [config.lora.target_modules]
    if isinstance(searched, Choice | Grid):
        candidates = list(searched.values)
    lists = [c for c in candidates if isinstance(c, list)]
    finetune = config.search_space.get("train.finetune")
    may_use_lora = config.train.finetune == "lora" or (
        isinstance(finetune, Choice | Grid) and "lora" in finetune.values)
    if not lists or not may_use_lora:
        return []
    names = modeling.linear_module_names(config.model, config.task, num_labels=2)
    problems = []
    for targets in lists:
        for target in modeling.unmatched_targets(targets, names):
            short = sorted({n.rsplit(".", 1)[-1] for n in names})
            problems.append(
                f"lora.target_modules: {target!r} matches no module of {config.model.path!r}"
                f"{did_you_mean(target, short)}; its linear modules are named {short} "
                "(or use all-linear)"
            )
    return problems


def _workers_that_fit(node: dict[str, Any], cpus: float, gpus: float) -> int:
    """How many data-parallel workers (cpus + gpus each) the node holds at once."""
    have = node["Resources"]
    counts = [int(have.get(kind, 0) / need + 1e-9) for kind, need in (("CPU", cpus), ("GPU", gpus))
              if need > 0]
    return min(counts) if counts else 0


def check_placement(config: SweepConfig, alive: list[dict[str, Any]]) -> list[str]:
    """A trial's workers must fit the cluster together, as its placement strategy demands."""
    r = config.resources
    world = r.workers_per_trial
    per_node = [_workers_that_fit(n, r.cpus_per_trial, r.gpus_per_trial) for n in alive]
    what = (f"resources.workers_per_trial: {world} workers x ({r.cpus_per_trial} CPUs, "
            f"{r.gpus_per_trial} GPUs) with placement_strategy {r.placement_strategy}")
    if r.placement_strategy == "STRICT_PACK" and max(per_node, default=0) < world:
        return [f"{what} need one node that holds them all, but the largest holds "
                f"{max(per_node, default=0)}; use PACK (workers may then span nodes), fewer "
                "workers, or bigger nodes"]
    if r.placement_strategy == "STRICT_SPREAD" and sum(1 for n in per_node if n) < world:
        return [f"{what} need {world} different nodes, but only "
                f"{sum(1 for n in per_node if n)} alive nodes fit a worker; use SPREAD or PACK, "
                "fewer workers, or add nodes"]
    if sum(per_node) < world:
        return [f"{what} need room for {world} workers, but the whole cluster holds "
                f"{sum(per_node)}; lower workers_per_trial or the per-worker resources, or add "
                "nodes"]
    return []


def groups_that_fit(config: SweepConfig, nodes: list[dict[str, Any]]) -> int:
    """How many data-parallel trials the alive nodes run at once: each one's W workers must be
    placed together, as its placement strategy demands (the trial process itself holds no
    CPU, so this is what bounds them)."""
    r = config.resources
    world = r.workers_per_trial
    per_node = [_workers_that_fit(n, r.cpus_per_trial, r.gpus_per_trial)
                for n in nodes if n.get("Alive", True)]
    if r.placement_strategy == "STRICT_PACK":
        return sum(n // world for n in per_node)
    if r.placement_strategy == "STRICT_SPREAD":  # k groups need k workers on >= W nodes each
        return max((k for k in range(1, sum(per_node) + 1)
                    if sum(min(n, k) for n in per_node) >= k * world), default=0)
    return sum(per_node) // world


def check_resources(config: SweepConfig, nodes: list[dict[str, Any]]) -> list[str]:
    """Per-trial CPUs/GPUs must fit on at least one alive node (and a data-parallel trial's
    workers on the cluster as a whole), or trials pend forever."""
    r = config.resources
    problems = []
    alive = [n for n in nodes if n.get("Alive", True)]
    max_cpu = max((n["Resources"].get("CPU", 0) for n in alive), default=0)
    max_gpu = max((n["Resources"].get("GPU", 0) for n in alive), default=0)
    if r.cpus_per_trial > max_cpu:
        problems.append(f"resources.cpus_per_trial: {r.cpus_per_trial} but the largest node has "
                        f"{max_cpu} CPUs; lower it to <= {max_cpu} or add bigger nodes")
    if r.gpus_per_trial > max_gpu:
        problems.append(f"resources.gpus_per_trial: {r.gpus_per_trial} but the largest node has "
                        f"{max_gpu} GPUs; lower it (fractions like 0.25 share a GPU) or add GPU "
                        "nodes")
    if r.workers_per_trial > 1 and not problems:
        problems += check_placement(config, alive)
    return problems


def _budget_extremes(config: SweepConfig, num_train: int) -> int:
    """The most steps any sampled config can take (ASHA's max_t)."""
    space = config.search_space
    options: dict[str, list[Any]] = {}
    for field in ("batch_size", "epochs", "max_steps", "gradient_accumulation_steps"):
        dim = space.get(f"train.{field}")
        if isinstance(dim, Choice | Grid):
            options[field] = list(dim.values)
        elif dim is not None:
            options[field] = [dim.low, dim.high]
        else:
            options[field] = [getattr(config.train, field)]
    best = 1
    for combo in product(*options.values()):
        train = config.train.model_copy(update=dict(zip(options, combo, strict=True)))
        best = max(best, optimizer_steps(train, config.resources.workers_per_trial, num_train))
    return best


def check_class_metric(config: SweepConfig, data: PreparedData) -> list[str]:
    """A per-class metric (`eval_f1_joy`) must name a class of the data; the config alone knows
    the classes only when `data.label_names` lists them."""
    per_class = per_class_metric(config.metric)
    if per_class is None or data.label_names is None:
        return []
    keys = metric_label_keys(data.label_names)
    if per_class[1] in keys:
        return []
    kind = per_class[0]
    return [f"metric: {config.metric!r} names no class of the data; the classes are "
            f"{data.label_names}, so use one of {[f'eval_{kind}_{k}' for k in keys]}"
            f"{did_you_mean(per_class[1], keys)}"]


def build_plan(config: SweepConfig, nodes: list[dict[str, Any]] | None = None, *,
               stored: bool = False) -> Plan:
    """Run every check; raise one ConfigError listing all problems, or return the plan.
    `stored`: a sweep that has run (`sweep resume`): its data is read as it was
    (`prepare_data(stored=True)`)."""
    problems = check_model(config) + check_logging(config.logging)
    if nodes is not None:
        problems += check_resources(config, nodes)
    if problems:
        raise ConfigError(problems, "sweep")
    try:
        tokenizer = modeling.load_tokenizer(config.model)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError([f"model.path: cannot load a tokenizer from {config.model.path!r} "
                           f"({first}); a local folder needs the tokenizer's files: save them "
                           "with tokenizer.save_pretrained(FOLDER)"], "sweep") from None
    problems = check_lora_targets(config)
    if problems:
        raise ConfigError(problems, "sweep")
    try:
        data = prepare_data(config.data, config.task, tokenizer, Path(config.base_dir or "."),
                            generation=config.train.generation_eval, stored=stored)
    except DataError as err:
        raise ConfigError([str(err)], "sweep") from None
    problems = check_class_metric(config, data) + check_teacher(config, data, tokenizer)
    if problems:
        raise ConfigError(problems, "sweep")
    spec = TrialSpec(
        task=config.task, model=config.model, data=config.data, train=config.train,
        lora=config.lora, distill=config.distill, metric=config.metric, mode=config.resolved_mode,  # type: ignore[arg-type]
        num_labels=data.num_labels, label_names=data.label_names,
        workers=config.resources.workers_per_trial, strategy=config.resources.strategy,
        cpus_per_worker=config.resources.cpus_per_trial,
        gpus_per_worker=config.resources.gpus_per_trial,
        placement_strategy=config.resources.placement_strategy,
    )
    tokens = data.summary()["train_tokens"] / max(len(data.train), 1)
    per_step = (tokens * config.train.batch_size * config.train.gradient_accumulation_steps
                * config.resources.workers_per_trial)
    return Plan(
        spec=spec,
        data=data,
        pad_id=int(tokenizer.pad_token_id),
        max_steps=_budget_extremes(config, len(data.train)),
        tokens_per_step=per_step,
    )
