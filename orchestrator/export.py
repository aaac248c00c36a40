"""Get a trial's model out of an experiment: load a checkpoint, rank the trials, export one.

Two export layouts, both in a folder of their own:

    adapter (LoRA sweeps, the default)   adapter_config.json + adapter_model.safetensors (peft)
                                         + tokenizer files + README.md + sweep_export.json
    merged (`merge=True`; always for     config.json + model.safetensors + tokenizer files
    full fine-tuning sweeps)             + README.md + sweep_export.json

A merged folder loads with plain `transformers` (`AutoModelForCausalLM.from_pretrained(DIR)`);
an adapter folder loads on its base model with `PeftModel.from_pretrained(base, DIR)`. For a GGUF
base the adapter's base is the dequantized safetensors cache (`trainables.modeling.materialize`).

>>> from orchestrator.export import export_best
>>> export_best("~/sweep_results/quickstart", "best-model", merge=True)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config import SweepConfig
from orchestrator.storage import Storage, open_storage
from trainables import modeling
from trainables.checkpointing import ADAPTER_DIR, METRICS_FILE, MODEL_DIR, SPEC_FILE

if TYPE_CHECKING:
    from orchestrator.results import SweepResult

EXPORT_INFO_FILE = "sweep_export.json"
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def load_checkpoint_model(
    config: SweepConfig, checkpoint: Path, device: str = "cpu"
) -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode. LoRA: the base model with the adapter attached."""
    tokenizer = modeling.load_tokenizer(config.model)
    num_labels = json.loads((checkpoint / SPEC_FILE).read_text()).get("num_labels")
    model: Any
    if (checkpoint / ADAPTER_DIR).exists():
        from peft import PeftModel

        base = modeling.load_model(
            config.model, config.task, num_labels=num_labels,
            pad_token_id=tokenizer.pad_token_id,
        )
        model = PeftModel.from_pretrained(base, checkpoint / ADAPTER_DIR)
    else:
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        auto = (AutoModelForCausalLM if config.task == "causal_lm"
                else AutoModelForSequenceClassification)
        model = auto.from_pretrained(checkpoint / MODEL_DIR)
    return model.to(device).eval(), tokenizer


@dataclass
class TrialCheckpoint:
    """A trial's best checkpoint (by the sweep metric) and where it ranks in the sweep."""

    trial_id: str
    rank: int  # 1 = the sweep's best trial
    value: float  # the trial's best value of the sweep metric
    uri: str  # local folder or s3:// URI of the checkpoint
    trial_config: dict[str, Any] = field(default_factory=dict)  # the searched values

    def local(self, scratch_dir: str) -> Path:
        """The checkpoint on local disk; object storage is downloaded into `scratch_dir`."""
        storage = open_storage(self.uri)
        if storage.is_local:
            return Path(self.uri)
        target = Path(scratch_dir) / self.trial_id
        return Path(storage.download(storage.root, str(target)))


def as_result(result_or_path: SweepResult | str | Path) -> SweepResult:
    from orchestrator.results import SweepResult, load_results

    if isinstance(result_or_path, SweepResult):
        return result_or_path
    return load_results(result_or_path)


def require_config(result: SweepResult) -> SweepConfig:
    if result.config is None:
        raise RuntimeError(f"{result.experiment_path}: no sweep config to rebuild the model")
    return result.config


def ranked_checkpoints(result: SweepResult, top_k: int | None = None) -> list[TrialCheckpoint]:
    """The trials that have a checkpoint, best first by their best value of the sweep metric.

    `top_k` keeps the first k and must not exceed the number of such trials.
    """
    from ray.tune import ExperimentAnalysis

    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, but got top_k={top_k}")
    experiment = open_storage(result.experiment_path)
    analysis = ExperimentAnalysis(
        experiment.root, storage_filesystem=None if experiment.is_local else experiment.fs,
        default_metric=result.metric, default_mode=result.mode,
    )
    trials = {trial.trial_id: trial for trial in analysis.trials}
    ranked: list[TrialCheckpoint] = []
    for row in result.trials.to_dict("records"):  # already sorted best first
        value = row.get(f"best_{result.metric}")
        if value is None or not math.isfinite(float(value)) or row["trial_id"] not in trials:
            continue
        trial = trials[row["trial_id"]]
        checkpoint = analysis.get_best_checkpoint(trial, metric=result.metric, mode=result.mode)
        if checkpoint is None or _missing(experiment, checkpoint.path):
            continue  # none kept, or deleted since
        ranked.append(TrialCheckpoint(
            trial_id=trial.trial_id, rank=len(ranked) + 1, value=float(value),
            uri=experiment.uri_for_path(checkpoint.path), trial_config=dict(trial.config),
        ))
    if top_k is not None and top_k > len(ranked):
        raise ValueError(
            f"top_k={top_k} but only {len(ranked)} of the {len(result.trials)} trials of "
            f"{result.experiment_path} have a checkpoint with a finite {result.metric}; "
            f"use a top-k of at most {len(ranked)}"
        )
    return ranked[:top_k] if top_k is not None else ranked


def _missing(storage: Storage, fs_path: str) -> bool:
    import pyarrow.fs as pafs

    return storage.fs.get_file_info(fs_path).type == pafs.FileType.NotFound


def find_trial(result: SweepResult, trial_id: str | None) -> TrialCheckpoint:
    """The given trial's best checkpoint, or the sweep's best trial's when `trial_id` is None."""
    ranked = ranked_checkpoints(result)
    if not ranked:
        raise RuntimeError(f"{result.experiment_path}: no trial has a checkpoint to export")
    if trial_id is None:
        return ranked[0]
    for candidate in ranked:
        if candidate.trial_id == trial_id:
            return candidate
    raise ValueError(
        f"trial {trial_id!r} has no checkpoint in {result.experiment_path}; trials with one: "
        f"{[c.trial_id for c in ranked]} (`sweep results EXPERIMENT` lists them)"
    )


def prepare_out_dir(out: str | Path, overwrite: bool = False) -> Path:
    """An empty folder to export into; refuses to mix a new export into an old one."""
    folder = Path(out).expanduser().resolve()
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{folder} is not empty; choose another --out folder or pass --overwrite "
                "(overwrite=True) to replace it"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def base_model_info(config: SweepConfig) -> dict[str, Any]:
    return {"path": config.model.path, "gguf_file": config.model.gguf_file,
            "revision": config.model.revision}


def save_merged(model: Any, tokenizer: Any, out: Path) -> None:
    """A plain `transformers` folder: config, safetensors weights, tokenizer."""
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) else "n/a"


def write_model_card(out: Path, info: dict[str, Any]) -> None:
    """sweep_export.json (what this model is and how it was chosen) and a README to load it."""
    (out / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
    auto = ("AutoModelForCausalLM" if info["task"] == "causal_lm"
            else "AutoModelForSequenceClassification")
    if info["layout"] == "adapter":
        kwargs = "".join(f", {k}={v!r}" for k, v in info["base_load_kwargs"].items())
        load = (f"from peft import PeftModel\nfrom transformers import {auto}, AutoTokenizer\n\n"
                f"base = {auto}.from_pretrained({info['adapter_base']!r}{kwargs})\n"
                f"model = PeftModel.from_pretrained(base, {str(out)!r})\n"
                f"tokenizer = AutoTokenizer.from_pretrained({str(out)!r})")
    else:
        load = (f"from transformers import {auto}, AutoTokenizer\n\n"
                f"model = {auto}.from_pretrained({str(out)!r})\n"
                f"tokenizer = AutoTokenizer.from_pretrained({str(out)!r})")
    metric = info["metric"]
    title = info.get("title", f"Trial {info.get('trial_id')} of {info['experiment']}")
    card = (f"# {title}\n\n"
            f"- base model: `{info['base_model']['path']}`"
            + (f" (GGUF `{info['base_model']['gguf_file']}`)" if info['base_model']['gguf_file']
               else "")
            + f"\n- task: {info['task']}, layout: {info['layout']}\n"
            f"- validation {metric['name']}: {_number(metric['value'])} (the sweep metric; "
            f"{metric['mode']} is better)\n\n"
            f"```python\n{load}\n```\n\nEverything else (settings, metrics): "
            f"`{EXPORT_INFO_FILE}`.\n")
    (out / "README.md").write_text(card)


def _base_load_kwargs(config: SweepConfig, spec: dict[str, Any], tokenizer: Any
                      ) -> dict[str, Any]:
    """What `from_pretrained` of the base needs to rebuild the trial's model (as
    `modeling.load_model` did): the number of labels, and a pad token id the base lacked."""
    if config.task == "causal_lm":
        return {}
    from transformers import AutoConfig

    kwargs: dict[str, Any] = {"num_labels": spec.get("num_labels")}
    if AutoConfig.from_pretrained(modeling.materialize(config.model)).pad_token_id is None:
        kwargs["pad_token_id"] = tokenizer.pad_token_id
    return kwargs


def export_best(
    result_or_path: SweepResult | str | Path,
    out: str | Path,
    merge: bool = False,
    *,
    trial_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Export the best trial's (or `trial_id`'s) best checkpoint to `out`; returns the folder.

    LoRA: the adapter in peft format, or with `merge=True` the merged full model. Full
    fine-tuning: always the full model.
    """
    result = as_result(result_or_path)
    config = require_config(result)
    chosen = find_trial(result, trial_id)
    folder = prepare_out_dir(out, overwrite)
    with tempfile.TemporaryDirectory(prefix="sweep-export-") as scratch:
        checkpoint = chosen.local(scratch)
        spec = json.loads((checkpoint / SPEC_FILE).read_text())
        is_lora = (checkpoint / ADAPTER_DIR).exists()
        info: dict[str, Any] = {
            "experiment": result.experiment_path, "trial_id": chosen.trial_id,
            "rank": chosen.rank, "checkpoint": chosen.uri, "task": config.task,
            "layout": "adapter" if is_lora and not merge else "merged",
            "base_model": base_model_info(config), "num_labels": spec.get("num_labels"),
            "metric": {"name": result.metric, "mode": result.mode, "value": chosen.value},
            "validation_metrics": json.loads((checkpoint / METRICS_FILE).read_text()),
            "trial_config": chosen.trial_config, "settings": spec,
        }
        if info["layout"] == "adapter":
            for name in _ADAPTER_FILES:
                shutil.copy2(checkpoint / ADAPTER_DIR / name, folder / name)
            adapter_config = json.loads((folder / "adapter_config.json").read_text())
            info["adapter_base"] = adapter_config.get("base_model_name_or_path")
            tokenizer = modeling.load_tokenizer(config.model)
            tokenizer.save_pretrained(folder)
            info["base_load_kwargs"] = _base_load_kwargs(config, spec, tokenizer)
        else:
            model, tokenizer = load_checkpoint_model(config, checkpoint)
            if is_lora:
                model = model.merge_and_unload()
            save_merged(model, tokenizer, folder)
    write_model_card(folder, info)
    return folder
