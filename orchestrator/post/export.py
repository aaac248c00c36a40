"""Get a trial's model out of an experiment: load a checkpoint, rank the trials, export one.

Two export layouts, both in a folder of their own:

    adapter (LoRA sweeps, the default)   adapter_config.json + adapter_model.safetensors (peft)
                                         + tokenizer files + README.md + sweep_export.json
    merged (`merge=True`; always for     config.json + model.safetensors + tokenizer files
    full fine-tuning sweeps)             + README.md + sweep_export.json

A merged folder loads with plain `transformers` (`AutoModelForCausalLM.from_pretrained(DIR)`);
an adapter folder loads on its base model with `PeftModel.from_pretrained(base, DIR)`. For a GGUF
base the adapter's base is the dequantized safetensors cache (`trainables.modeling.materialize`).

>>> from orchestrator.post.export import export_best
>>> export_best("~/sweep_results/quickstart", "best-model", merge=True)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config.schema import SweepConfig
from orchestrator.experiment.checkpoints import is_lora_checkpoint, load_checkpoint_model
from orchestrator.experiment.layout import EXPORT_INFO_FILE
from orchestrator.experiment.trials import as_result, find_trial, require_config
from orchestrator.post.errors import OutputExistsError
from trainables import modeling
from trainables.checkpointing import ADAPTER_DIR, METRICS_FILE, SPEC_FILE

if TYPE_CHECKING:
    from orchestrator.experiment.results import SweepResult

_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def prepare_out_dir(out: str | Path, overwrite: bool = False) -> Path:
    """An empty folder to export into; refuses to mix a new export into an old one."""
    folder = Path(out).expanduser().resolve()
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise OutputExistsError(
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
    if spec.get("label_names"):  # the class names, as a merged export's config.json has them
        kwargs["id2label"] = dict(enumerate(spec["label_names"]))
        kwargs["label2id"] = {name: i for i, name in enumerate(spec["label_names"])}
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
        is_lora = is_lora_checkpoint(checkpoint)
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
