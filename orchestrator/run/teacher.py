"""The teacher of a distillation sweep (`distill:`): checked before the sweep, run once.

`check_teacher` (preflight, cheap: configs and tokenizers only) refuses a teacher that cannot
teach this student on this data. `attach_teacher_targets` (launch and resume) runs the teacher
over the train split once, in a Ray task with one trial's resources, and puts its targets on
the train examples that every trial receives (see `trainables.distill`); `distill.json` in the
experiment records what that pass cost and what computing it in every trial would have cost.

Teachers: a hub id or a model folder (a merged `sweep export` folder; an adapter export is
merged onto its base), or an earlier sweep's experiment (its best trial, or `teacher_trial`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.config.errors import ConfigError
from orchestrator.experiment.layout import DISTILL_FILE, SWEEP_CONFIG_FILE
from trainables import modeling
from trainables.config import DistillConfig, ModelConfig, Task

if TYPE_CHECKING:
    from orchestrator.config.schema import SweepConfig
    from trainables.data import PreparedData

__all__ = ["DISTILL_FILE", "attach_teacher_targets", "check_teacher", "describe", "load_teacher",
           "pinned_teacher"]


class Prepared(Protocol):
    """What `attach_teacher_targets` reads of a `preflight.Plan`."""

    data: PreparedData
    pad_id: int
    max_steps: int
    tokens_per_step: float


def teacher_source(cfg: DistillConfig, base_dir: str | None) -> str:
    """The teacher as given, a relative folder read from `base_dir` when it exists there."""
    source = cfg.teacher
    if "://" in source or os.path.isabs(os.path.expanduser(source)):
        return os.path.expanduser(source)
    local = Path(base_dir or ".") / os.path.expanduser(source)
    return str(local) if local.exists() else source


def is_experiment(source: str) -> bool:
    if source.startswith("s3://"):
        return True
    return (Path(source) / SWEEP_CONFIG_FILE).is_file()


def _is_adapter_folder(source: str) -> bool:
    folder = Path(modeling.resolve_model_path(source))
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def _vocab_digest(tokenizer: Any) -> str:
    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _classifier_labels(model_config: Any) -> int | None:
    architectures = getattr(model_config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return None
    return int(model_config.num_labels)


def _label_problems(where: str, count: int, names: list[str] | None,
                    data: PreparedData) -> list[str]:
    """A classifier teacher must predict the data's classes, in the data's id order."""
    if count != data.num_labels:
        return [f"{where} predicts {count} classes but the data has {data.num_labels}; give a "
                "teacher trained on the same labels"]
    default = names is None or all(n == f"LABEL_{i}" for i, n in enumerate(names))
    if not default and data.label_names is not None and names != data.label_names:
        return [f"{where} names its classes {names} (in id order) but the data's are "
                f"{data.label_names}; its soft labels would teach the wrong classes: give a "
                "teacher trained with the same data.label_names"]
    return []


def _config_names(model_config: Any) -> list[str] | None:
    id2label = getattr(model_config, "id2label", None) or {}
    try:
        return [str(id2label[i]) for i in range(int(model_config.num_labels))]
    except (KeyError, TypeError, ValueError):
        return None


def check_teacher(config: SweepConfig, data: PreparedData, tokenizer: Any) -> list[str]:
    """Problems with `distill` for this student and data, naming the field and the fix."""
    cfg = config.distill
    if cfg is None:
        return []
    source = teacher_source(cfg, config.base_dir)
    where = f"distill.teacher: {cfg.teacher!r}"
    if is_experiment(source):
        return _check_experiment_teacher(config, cfg, source, data, where)
    if cfg.teacher_trial is not None:
        return [f"distill.teacher_trial: {cfg.teacher_trial!r} picks a trial of an experiment, "
                f"but {where} is a model, not an experiment folder; drop teacher_trial"]
    from transformers import AutoConfig

    if _is_adapter_folder(source):
        if config.task == "sequence_classification":
            return [f"{where} is a LoRA adapter export; a classifier's adapter needs its head "
                    "and class count to load: export the teacher merged (`sweep export --merge`)"
                    " or give its experiment folder"]
        adapter = json.loads((Path(modeling.resolve_model_path(source))
                              / "adapter_config.json").read_text())
        base = adapter.get("base_model_name_or_path")
        try:
            model_config = AutoConfig.from_pretrained(base)
        except Exception as err:
            return [f"{where} is a LoRA adapter whose base {base!r} does not load "
                    f"({_first_line(err)}); export the teacher merged (`sweep export --merge`)"]
    else:
        try:
            model_config = AutoConfig.from_pretrained(modeling.resolve_model_path(source),
                                                      revision=cfg.teacher_revision)
        except Exception as err:
            return [f"{where} does not load ({_first_line(err)}); give a hub id, a model folder "
                    "(e.g. a `sweep export` folder) or an earlier sweep's experiment folder"]
    architectures = getattr(model_config, "architectures", None) or []
    if config.task == "sequence_classification":
        labels = _classifier_labels(model_config)
        if labels is None:
            return [f"{where} is not a sequence classifier (architectures {architectures}), so "
                    "it has no class predictions to teach; give a fine-tuned classifier, e.g. a "
                    "`sweep export --merge` folder or the experiment that trained it"]
        return _label_problems(where, labels, _config_names(model_config), data)
    if not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return [f"{where} is not a causal LM (architectures {architectures}); its next-token "
                "predictions would come from an untrained head: give a causal LM"]
    teacher_tokenizer = modeling.load_tokenizer(
        ModelConfig(path=source, revision=cfg.teacher_revision),
        folder=modeling.resolve_model_path(source))
    if _vocab_digest(teacher_tokenizer) != _vocab_digest(tokenizer):
        return [f"{where} has another vocabulary than the student ({config.model.path!r}); "
                "token-level distillation needs the same tokenizer: pick a teacher and student "
                "of one model family"]
    return []


def _check_experiment_teacher(config: SweepConfig, cfg: DistillConfig, source: str,
                              data: PreparedData, where: str) -> list[str]:
    from orchestrator.experiment.results import load_results
    from orchestrator.experiment.storage import open_storage
    from orchestrator.experiment.trials import find_trial, require_config
    from trainables.checkpointing import SPEC_FILE
    from trainables.config import STORED, TrialSpec

    try:
        result = load_results(source)
        teacher_config = require_config(result)
        chosen = find_trial(result, cfg.teacher_trial)
        spec = TrialSpec.model_validate_json(open_storage(chosen.uri).read_text(SPEC_FILE),
                                             context={STORED: True})
    except Exception as err:  # the experiment layer's errors name what is missing
        return [f"{where}: {_first_line(err)}"]
    if teacher_config.task != config.task:
        return [f"{where} trained a {teacher_config.task} model; this sweep's task is "
                f"{config.task}; give a teacher of the same task"]
    if config.task == "sequence_classification":
        return _label_problems(f"{where} (trial {chosen.trial_id})", int(spec.num_labels or 0),
                               spec.label_names, data)
    if teacher_config.model.path != config.model.path:
        student = modeling.load_tokenizer(config.model)
        teacher = modeling.load_tokenizer(teacher_config.model)
        if _vocab_digest(teacher) != _vocab_digest(student):
            return [f"{where} has another vocabulary than the student ({config.model.path!r}); "
                    "token-level distillation needs the same tokenizer"]
    return []


def load_teacher(cfg: DistillConfig, task: Task, base_dir: str | None
                 ) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, what it is) of the teacher, on the CPU, LoRA merged in."""
    source = teacher_source(cfg, base_dir)
    info: dict[str, Any] = {"teacher": cfg.teacher}
    if is_experiment(source):
        from orchestrator.experiment.checkpoints import is_lora_checkpoint, load_checkpoint_model
        from orchestrator.experiment.results import load_results
        from orchestrator.experiment.trials import find_trial, require_config

        result = load_results(source)
        chosen = find_trial(result, cfg.teacher_trial)
        with tempfile.TemporaryDirectory(prefix="sweep-teacher-") as scratch:
            checkpoint = chosen.local(scratch)
            model, tokenizer = load_checkpoint_model(require_config(result), checkpoint)
            if is_lora_checkpoint(checkpoint):
                model = model.merge_and_unload()
        info |= {"experiment": result.experiment_path, "trial_id": chosen.trial_id,
                 "checkpoint": chosen.uri, result.metric: chosen.value}
    elif _is_adapter_folder(source):
        import peft

        auto = (peft.AutoPeftModelForCausalLM if task == "causal_lm"
                else peft.AutoPeftModelForSequenceClassification)
        folder = modeling.resolve_model_path(source)
        model = auto.from_pretrained(folder).merge_and_unload()
        tokenizer = modeling.load_tokenizer(ModelConfig(path=source), folder=folder)
    else:
        model_config = ModelConfig(path=source, revision=cfg.teacher_revision)
        model = modeling.load_model(model_config, task)
        tokenizer = modeling.load_tokenizer(model_config)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    if task == "sequence_classification":
        info["num_labels"] = int(model.config.num_labels)
    return model.eval(), tokenizer, info


def run_teacher(cfg: DistillConfig, task: Task, base_dir: str | None, student: ModelConfig,
                data: PreparedData, pad_id: int, max_length: int
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The teacher's targets for `data.train`, and what producing them took (a Ray task)."""
    import torch

    from trainables.distill import target_bytes, teacher_targets
    from trainables.runtime import pick_device

    started = time.monotonic()
    model, tokenizer, info = load_teacher(cfg, task, base_dir)
    loaded = time.monotonic()
    device = pick_device()
    input_ids = None
    if task == "sequence_classification":
        if _vocab_digest(tokenizer) != _vocab_digest(modeling.load_tokenizer(student)):
            input_ids = tokenizer(data.raw_train_texts, truncation=True,
                                  max_length=max_length)["input_ids"]
        if input_ids is not None:
            pad_id = int(tokenizer.pad_token_id)
    vocab_size = None
    if task == "causal_lm":
        from transformers import AutoConfig

        vocab_size = int(AutoConfig.from_pretrained(modeling.materialize(student)).vocab_size)
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16))
                if device.type == "cuda" else None)
    targets = teacher_targets(model, data.train, task=task, pad_id=pad_id, top_k=cfg.top_k,
                              batch_size=cfg.batch_size, device=device, input_ids=input_ids,
                              autocast=autocast, vocab_size=vocab_size)
    info |= {
        "device": str(device),
        "examples": len(targets),
        "load_s": round(loaded - started, 2),
        "pass_s": round(time.monotonic() - loaded, 2),
        "target_mb": round(target_bytes(targets) / 2**20, 3),
        "own_tokenization": input_ids is not None,
    }
    return targets, info


def attach_teacher_targets(config: SweepConfig, plan: Prepared) -> dict[str, Any] | None:
    """Run the teacher once (a Ray task with one trial's resources) and put its targets on
    `plan.data.train`; returns what it cost and what per-trial teacher passes would cost."""
    cfg = config.distill
    if cfg is None:
        return None
    import ray

    task = ray.remote(run_teacher).options(
        num_cpus=config.resources.cpus_per_trial, num_gpus=config.resources.gpus_per_trial)
    targets, info = ray.get(task.remote(cfg, config.task, config.base_dir, config.model,
                                        plan.data, plan.pad_id, config.data.max_length))
    if info.get("num_labels", plan.data.num_labels) != plan.data.num_labels:
        raise ConfigError([f"distill.teacher: {cfg.teacher!r} predicts {info['num_labels']} "
                           f"classes but the data has {plan.data.num_labels}; give a teacher "
                           "trained on the same labels"], "sweep")
    if len(targets) != len(plan.data.train):
        raise RuntimeError(f"the teacher returned {len(targets)} targets for "
                           f"{len(plan.data.train)} train examples")
    for example, target in zip(plan.data.train, targets, strict=True):
        example.update(target)
    epochs = plan.max_steps * plan.tokens_per_step / max(plan.data.summary()["train_tokens"], 1)
    per_trial = info["pass_s"] * max(epochs, 1.0)
    from orchestrator.search.space import grid_size

    trials = config.num_samples * grid_size(config)
    info |= {
        "trials": trials,
        "epochs_per_trial_at_most": round(epochs, 2),
        "teacher_forward_s_if_per_trial": round(per_trial * trials, 1),
        "teacher_forward_s_saved": round(per_trial * trials - info["pass_s"], 1),
    }
    return info


def pinned_teacher(config: SweepConfig, recorded: dict[str, Any]) -> SweepConfig:
    """The config with the teacher trial the sweep started with (`distill.json`), so a resumed
    sweep keeps its teacher even if the teacher's experiment has a new best trial since."""
    if config.distill is None or not recorded.get("trial_id"):
        return config
    distill = config.distill.model_copy(update={"teacher_trial": recorded["trial_id"]})
    return config.model_copy(update={"distill": distill})


def _size(mb: float) -> str:
    return f"{mb:.1f} MB" if mb >= 1 else f"{mb * 1024:.0f} KB"


def describe(info: dict[str, Any]) -> str:
    """One line for the console."""
    what = info.get("trial_id") and f"trial {info['trial_id']} of {info['experiment']}"
    return (f"Teacher: {what or info['teacher']} ({info['parameters'] / 1e6:.1f}M parameters): "
            f"targets for {info['examples']} train examples in {info['pass_s']:.0f}s on "
            f"{info['device']} ({_size(info['target_mb'])}), shared by {info['trials']} trials; "
            "the teacher on every batch of every trial would have taken up to "
            f"~{info['teacher_forward_s_if_per_trial']:.0f}s")
