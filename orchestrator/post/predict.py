"""Run a tuned model on new inputs: the best trial of an experiment, or an exported folder.

`load_predictor` accepts what `sweep run` and `sweep export` leave behind:

    an experiment (folder, s3://, gs://)  the best trial's best checkpoint (or `trial_id`'s),
                                          loaded with the sweep's own config; the sweep's
                                          `data.prompt_template` is applied to each input
    an export folder (`sweep export`,     a merged transformers folder or a peft adapter on its
    or any transformers/peft folder)      base; `sweep_export.json`, when there, gives the task
                                          and the prompt template

A causal LM completes each prompt (greedy unless a temperature is given); a classifier returns
the label name and the probabilities of its top classes.

>>> from orchestrator.post.predict import load_predictor
>>> predictor = load_predictor("~/sweep_results/quickstart")  # doctest: +SKIP
>>> predictor.predict([{"date": "2038-04-01"}])[0]["completion"]  # doctest: +SKIP
' April 1, 2038'
"""

from __future__ import annotations

import json
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.experiment.checkpoints import load_checkpoint_model
from orchestrator.experiment.layout import EXPORT_INFO_FILE, SWEEP_CONFIG_FILE
from orchestrator.experiment.storage import is_uri
from orchestrator.experiment.trials import as_result, find_trial, require_config
from orchestrator.post.errors import PredictInputError
from trainables import modeling
from trainables.config import ModelConfig, Task

Item = str | dict[str, Any]  # one input: a text, or a row with the prompt template's fields


@dataclass
class Predictor:
    """A loaded model and how its inputs are written."""

    task: Task
    model: Any
    tokenizer: Any
    source: str  # what was loaded: the checkpoint's URI, or the export folder
    prompt_template: str | None = None  # the sweep's; None: inputs are used as they are
    text_column: str = "text"  # a classifier's input field in JSONL rows
    max_length: int | None = None  # a classifier's inputs are cut to it, as in training

    def template_fields(self) -> list[str]:
        if self.prompt_template is None:
            return []
        return [f for _, f, _, _ in string.Formatter().parse(self.prompt_template) if f]

    def prompt_of(self, item: Item, raw: bool = False) -> str:
        """The text the model sees: the template filled from `item`, or `item` as it is."""
        fields = self.template_fields()
        if raw or not fields or self.task != "causal_lm":
            return item if isinstance(item, str) else _text_of(item, self.text_column)
        if isinstance(item, str):
            if len(fields) == 1:
                return self.prompt_template.format(**{fields[0]: item})  # type: ignore[union-attr]
            raise PredictInputError(
                f"the sweep's prompt template {self.prompt_template!r} has fields {fields}, so "
                "one text cannot fill it; give --file ROWS.jsonl with those fields per line, or "
                "--raw to send the text as it is")
        missing = [f for f in fields if f not in item]
        if missing:
            raise PredictInputError(
                f"input {item!r} lacks {missing}, which the prompt template "
                f"{self.prompt_template!r} needs; give every row the fields {fields}, or --raw")
        return self.prompt_template.format(**item)  # type: ignore[union-attr]

    def predict(self, items: list[Item], *, raw: bool = False, max_new_tokens: int = 128,
                temperature: float = 0.0, top_k: int = 3, batch_size: int = 8
                ) -> list[dict[str, Any]]:
        """One result per input: `{"prompt", "completion"}` for a causal LM, `{"text", "label",
        "probabilities"}` (the `top_k` most likely classes, best first) for a classifier."""
        prompts = [self.prompt_of(item, raw) for item in items]
        if self.task == "causal_lm":
            return self._complete(prompts, max_new_tokens, temperature, batch_size)
        return self._classify(prompts, top_k, batch_size)

    def _complete(self, prompts: list[str], max_new_tokens: int, temperature: float,
                  batch_size: int) -> list[dict[str, Any]]:
        from trainables.generation import generate

        # Tokenized as in training: the prompt without special tokens, the completion follows.
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        new_tokens = generate(
            self.model, ids, pad_id=int(self.tokenizer.pad_token_id),
            eos_id=self.tokenizer.eos_token_id, max_new_tokens=max_new_tokens,
            batch_size=batch_size, device=_device_of(self.model), temperature=temperature,
        )
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [{"prompt": p, "completion": t} for p, t in zip(prompts, texts, strict=True)]

    def _classify(self, texts: list[str], top_k: int, batch_size: int) -> list[dict[str, Any]]:
        import torch

        # A config read from config.json has int ids; one given as keyword arguments may not.
        id2label = {int(i): name for i, name in
                    (getattr(self.model.config, "id2label", None) or {}).items()}
        out: list[dict[str, Any]] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            enc = self.tokenizer(chunk, truncation=True, max_length=self.max_length,
                                 padding=True, return_tensors="pt").to(_device_of(self.model))
            with torch.no_grad():
                logits = self.model(input_ids=enc["input_ids"],
                                    attention_mask=enc["attention_mask"]).logits.float()
            for text, probs in zip(chunk, torch.softmax(logits, -1).tolist(), strict=True):
                ranked = sorted(range(len(probs)), key=lambda i: -probs[i])[:top_k]
                names = [str(id2label.get(i, i)) for i in ranked]
                out.append({"text": text, "label": names[0],
                            "probabilities": {n: probs[i] for n, i in zip(names, ranked,
                                                                         strict=True)}})
        return out


def _text_of(item: dict[str, Any], column: str) -> str:
    for key in (column, "text"):
        if key in item:
            return str(item[key])
    raise PredictInputError(f"input {item!r} has no {column!r} field; give each JSONL row the "
                            f"input text as {column!r}")


def _device_of(model: Any) -> Any:
    return next(model.parameters()).device


def is_export_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()


def load_predictor(path: str | Path, *, trial_id: str | None = None,
                   device: str | None = None) -> Predictor:
    """The model at `path`: an experiment (its best trial, or `trial_id`) or an export folder.

    Raises `PredictInputError` when `path` is missing or is neither.
    """
    from trainables.runtime import pick_device

    where = device or str(pick_device())
    text = str(path)
    if is_uri(text):  # object storage (s3://, gs://, ...) holds experiments, not exports
        return _from_experiment(text, trial_id, where)
    folder = Path(text).expanduser()
    if not folder.exists():
        raise PredictInputError(
            f"{text}: no such file or folder; give an experiment folder (or s3://, gs:// URI) "
            "made by `sweep run`, or a model folder written by `sweep export`")
    if (folder / SWEEP_CONFIG_FILE).is_file():
        return _from_experiment(str(folder), trial_id, where)
    if folder.is_dir() and is_export_folder(folder):
        if trial_id is not None:
            raise PredictInputError(f"--trial {trial_id} picks a trial of an experiment, but "
                                    f"{text} is an exported model; drop --trial")
        return _from_export(folder, where)
    raise PredictInputError(
        f"{text} is neither an experiment (no {SWEEP_CONFIG_FILE}) nor an exported model (no "
        "config.json or adapter_config.json); give the folder `sweep run` printed after "
        "`Experiment:` or the --out folder of `sweep export`")


def _from_experiment(path: str, trial_id: str | None, device: str) -> Predictor:
    result = as_result(path)
    config = require_config(result)
    chosen = find_trial(result, trial_id)
    with tempfile.TemporaryDirectory(prefix="sweep-predict-") as scratch:
        model, tokenizer = load_checkpoint_model(config, chosen.local(scratch), device=device)
    return Predictor(task=config.task, model=model, tokenizer=tokenizer, source=chosen.uri,
                     prompt_template=config.data.prompt_template,
                     text_column=config.data.text_column, max_length=config.data.max_length)


def _from_export(folder: Path, device: str) -> Predictor:
    info: dict[str, Any] = {}
    if (folder / EXPORT_INFO_FILE).is_file():
        info = json.loads((folder / EXPORT_INFO_FILE).read_text())
    data = info.get("settings", {}).get("data", {})
    tokenizer = modeling.load_tokenizer(ModelConfig(path=str(folder)), folder=str(folder))
    if (folder / "adapter_config.json").is_file():
        task, model = _load_adapter(folder, info)
    else:
        task = info.get("task") or _task_of(folder)
        model = _auto_class(task).from_pretrained(folder)
    return Predictor(task=task, model=model.to(device).eval(), tokenizer=tokenizer,
                     source=str(folder), prompt_template=data.get("prompt_template"),
                     text_column=data.get("text_column", "text"),
                     max_length=data.get("max_length"))


def _load_adapter(folder: Path, info: dict[str, Any]) -> tuple[Task, Any]:
    from peft import PeftConfig, PeftModel

    peft_config = PeftConfig.from_pretrained(str(folder))
    task: Task = info.get("task") or ("sequence_classification"
                                      if str(peft_config.task_type).endswith("SEQ_CLS")
                                      else "causal_lm")
    base_path = info.get("adapter_base") or peft_config.base_model_name_or_path
    if not base_path:
        raise PredictInputError(f"{folder}: adapter_config.json names no base model "
                                "(base_model_name_or_path); export it again with `sweep export`")
    kwargs = dict(info.get("base_load_kwargs", {}))
    if "id2label" in kwargs:  # JSON made the ids strings
        kwargs["id2label"] = {int(i): name for i, name in kwargs["id2label"].items()}
    base = _auto_class(task).from_pretrained(base_path, **kwargs)
    return task, PeftModel.from_pretrained(base, str(folder))


def _task_of(folder: Path) -> Task:
    """A plain transformers folder's task, from the architecture its config.json names."""
    architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "sequence_classification"
    return "causal_lm"


def _auto_class(task: Task) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification


def read_inputs(path: str | Path) -> list[Item]:
    """`--file`: a `.jsonl` file gives one JSON object per line (the template's fields); any
    other file one input text per line. Blank lines are skipped."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise PredictInputError(f"--file {path}: no such file; give a text file with one input "
                                "per line, or a .jsonl file with one JSON object per line")
    lines = [(n, line) for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1)
             if line.strip()]
    if file.suffix.lower() != ".jsonl":
        return [line for _, line in lines]
    items: list[Item] = []
    for number, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise PredictInputError(f"--file {path}: line {number} is not JSON ({err.msg}); "
                                    "give one JSON object per line") from None
        if not isinstance(row, dict):
            raise PredictInputError(f"--file {path}: line {number} is a JSON "
                                    f"{type(row).__name__}, not an object with the template's "
                                    "fields")
        items.append(row)
    return items
