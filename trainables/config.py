"""What a trial understands: the model, data, training and LoRA settings.

These pydantic models are the single declaration of every knob a trial reads. The driver
(`orchestrator`) composes them into a whole sweep config and validates it once, at load, then
hands each trial the `TrialSpec` object itself; a trial validates only the sections the searcher
changed (`merge_trial_config`).
"""

from __future__ import annotations

import difflib
import os
import string
import types
import typing
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

Task = Literal["causal_lm", "sequence_classification"]
SEED_MAX = 2**32 - 1  # numpy's and hyperopt's seeds must fit 32 bits
# train.seed, either sign: `trainables.loop.epoch_order` seeds torch with seed * 100_003 +
# epoch, and torch takes seeds only from -2**63 to 2**64 - 1; 2**46 * 100_003 is 7.0e18, which
# leaves room below 2**63 (9.2e18) for any epoch count. (numpy gets seed % 2**32.)
TRAIN_SEED_LIMIT = 2**46
STORED = "stored"  # validation context key: a config read back from an experiment


def _number_types(annotation: Any) -> tuple[bool, bool]:
    """(every non-null type of `annotation` is int or float, null is allowed)."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = typing.get_args(annotation) if union else (annotation,)
    kinds = [a for a in args if a is not type(None)]
    return bool(kinds) and all(a in (int, float) for a in kinds), len(kinds) < len(args)


class StrictModel(BaseModel):
    """Unknown keys are errors (with a "did you mean" added by the loader), never ignored.
    NaN and infinity are never valid numbers, nor is `true`/`false` where a number goes
    (pydantic alone would read `max_grad_norm: false` as 0.0)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
    # Validated as stored (`is_stored`); copies keep it, and so does validating the model again
    # (an assignment, or nesting it in a TrialSpec), which runs its model checks once more.
    _stored: bool = PrivateAttr(False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            numeric, nullable = _number_types(cls.model_fields[info.field_name].annotation)
            if numeric:
                raise ValueError(
                    f"{str(value).lower()} is a yes/no value where a number goes; write a number"
                    + (" (or null: see the field's description)" if nullable else "")
                )
        return value


def stored_context(info: ValidationInfo) -> bool:
    """Whether this validation reads back a config an experiment saved
    (`model_validate(raw, context={STORED: True})`)."""
    return bool(info.context and info.context.get(STORED))


def is_stored(model: StrictModel, info: ValidationInfo) -> bool:
    """Whether `model` is (part of) a config an experiment saved, read back. The checks that
    refuse a new sweep as pointless or ambiguous, added after sweeps had run with such
    configs, pass over it: its time is spent, and its results must stay readable. Types and
    ranges are still checked."""
    if stored_context(info):
        model._stored = True
    return model._stored


def _not_blank(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"is empty; give {what}")
    return value


class ModelConfig(StrictModel):
    path: str = Field(
        description="Hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`), local folder, or "
        "`pkg://PACKAGE[/sub/folder]` for a model shipped inside an installed Python package."
    )
    gguf_file: str | None = Field(
        None, description="File name of GGUF weights inside `path`; dequantized once per node "
        "into a safetensors cache that trials memory-map."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub repo.")

    @field_validator("path")
    @classmethod
    def _a_folder(cls, path: str) -> str:
        _not_blank(path, "a local folder, a hub id or pkg://PACKAGE/folder")
        if path.lower().endswith(".gguf"):
            folder, name = os.path.split(path.rstrip("/"))
            raise ValueError(
                f"{path!r} is a GGUF file; point model.path at its folder and name the file: "
                f"model.path: {folder or '.'} and model.gguf_file: {name}"
            )
        return path


class TextLabelFiles(StrictModel):
    """A split stored as two aligned files: one text per line, one integer label per line."""

    text: str
    labels: str

    @field_validator("text", "labels")
    @classmethod
    def _a_file(cls, path: str) -> str:
        return _not_blank(path, "a file with one line per example")


SplitSource = str | TextLabelFiles


class DataConfig(StrictModel):
    hub_dataset: str | None = Field(
        None, description="Hub dataset name; then train/validation/test name its splits."
    )
    hub_config: str | None = Field(None, description="Hub dataset configuration name.")
    train: SplitSource = Field(
        description="Local file (.jsonl/.json/.csv/.parquet), {text, labels} file pair, or the "
        "hub split name when `hub_dataset` is set."
    )
    validation: SplitSource | None = Field(
        None, description="Held-out split for selection. Missing: carved from train by "
        "`validation_fraction` and `split_seed`."
    )
    test: SplitSource | None = Field(None, description="Test split, never used for selection.")
    validation_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share of train carved out when no validation is given."
    )
    split_seed: int = Field(
        0, description="Seed of that carve-out (same split every run; any integer)."
    )
    text_column: str = Field("text", description="Input text (classification, plain-text LM).")
    label_column: str = Field("label", description="Integer or string class label.")
    prompt_template: str | None = Field(
        None, description="SFT prompt, formatted with the row: `Question: {question}\\nAnswer:`. "
        "Set it for prompt/completion training: loss is taken on completion tokens only."
    )
    completion_template: str = Field(
        " {completion}", description="SFT completion, formatted with the row."
    )
    max_length: int = Field(256, ge=8, description="Tokens per example; longer ones are cut.")
    max_train_examples: int | None = Field(None, ge=1, description="Cap on train rows.")
    max_eval_examples: int | None = Field(None, ge=1, description="Cap on validation/test rows.")

    label_names: list[str] | None = Field(
        None, description="Class names in id order (`[anger, joy, optimism, sadness]`): integer "
        "labels are named by them, string labels map to their position. They name the per-class "
        "metrics (`eval_f1_joy`) and the exported model's id2label. Default: the integer labels, "
        "or the sorted distinct string labels."
    )
    label_names_file: str | None = Field(
        None, description="Class names from a file instead of label_names: one `ID<tab>NAME` "
        "per line (TweetEval's mapping.txt) or one name per line in id order."
    )
    positive_label: str | None = Field(
        None, description="Binary tasks: the class whose F1 is also reported as "
        "`eval_binary_f1` (TweetEval irony's metric is the F1 of `irony`). A label name, or the "
        "label's id when the classes have no names (`1` or `'1'`)."
    )

    @field_validator("positive_label", mode="before")
    @classmethod
    def _label_id_as_text(cls, value: Any) -> Any:
        """`positive_label: 1` is read by YAML as a number; it names the class whose id is 1,
        which the data's label names call '1'."""
        if isinstance(value, bool):
            raise ValueError(f"{str(value).lower()} is a yes/no value; give the positive class's "
                             "name or id (e.g. positive_label: 1)")
        return str(value) if isinstance(value, int) else value

    @field_validator("train", "validation", "test")
    @classmethod
    def _a_source(cls, source: SplitSource | None) -> SplitSource | None:
        if isinstance(source, str):
            _not_blank(source, "a file (.jsonl/.json/.csv/.parquet), a {text, labels} pair, or "
                       "the hub split name")
        return source

    @field_validator("prompt_template", "completion_template")
    @classmethod
    def _well_formed_template(cls, template: str | None) -> str | None:
        if template is None:
            return None
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as err:  # "Single '}' encountered", "expected '}' before end"
            raise ValueError(
                f"{template!r} is not a valid template ({err}); fields are written {{column}}, "
                "and a literal brace is doubled: {{ or }}"
            ) from None
        bad = [f for f in fields if not f.isidentifier()]
        if bad:
            raise ValueError(f"{template!r} has fields {bad} that are not column names; write "
                             "{column} with a plain column name, and double literal braces: "
                             "{{ or }}")
        return template

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> DataConfig:
        """Settings that would be ignored, or splits that are one file; all reported at once."""
        if is_stored(self, info):
            return self
        problems = []
        if self.hub_config is not None and self.hub_dataset is None:
            problems.append(
                f"data.hub_config: {self.hub_config!r} is set but data.hub_dataset is not, so "
                "it would be ignored; set data.hub_dataset too, or drop hub_config"
            )
        default = type(self).model_fields["completion_template"].default
        if self.prompt_template is None and self.completion_template != default:
            problems.append(
                f"data.completion_template: {self.completion_template!r} is set but "
                "data.prompt_template is not, so it would be ignored and trials would train on "
                "data.text_column; set data.prompt_template too (e.g. 'Question: {question}"
                "\\nAnswer:'), or drop completion_template"
            )
        if self.prompt_template is not None and not any(
                f for _, f, _, _ in string.Formatter().parse(self.completion_template) if f):
            problems.append(
                f"data.completion_template: {self.completion_template!r} has no {{column}} "
                "field, so every example would teach the same completion; name the column to "
                "learn, e.g. ' {answer}'"
            )
        problems += self._same_files()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _same_files(self) -> list[str]:
        """The same path twice (as written; `prepare_data` also compares the files themselves)."""
        if self.hub_dataset is not None:
            return []
        seen: dict[str, str] = {}
        problems = []
        for name in ("train", "validation", "test"):
            source = getattr(self, name)
            if not isinstance(source, str):
                continue
            key = os.path.normpath(os.path.expanduser(source))
            if key in seen:
                problems.append(same_split_message(name, seen[key], repr(source)))
            else:
                seen[key] = name
        return problems


    @field_validator("label_names")
    @classmethod
    def _distinct_label_names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(names) < 2:
            raise ValueError(f"{names} names {len(names)} class; a classifier needs at least two")
        if names is not None and len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{names} lists {twice} more than once; name each class once")
        return names

    @model_validator(mode="after")
    def _one_label_source(self) -> DataConfig:
        if self.label_names is not None and self.label_names_file is not None:
            raise ValueError("label_names and label_names_file are both set; give the class "
                             "names one way: drop one of them")
        if (self.positive_label is not None and self.label_names is not None
                and self.positive_label not in self.label_names):
            raise ValueError(
                f"positive_label: {self.positive_label!r} is not one of label_names "
                f"{self.label_names}{_did_you_mean(self.positive_label, self.label_names)}")
        return self


class GenerationEvalConfig(StrictModel):
    """Greedy generation on a fixed sample of the validation split, scored against the data."""

    metric: Literal["exact_match_final_answer"] = Field(
        "exact_match_final_answer", description="exact_match_final_answer: the final answer "
        "(after `####`, GSM8K-style) of the generated completion equals the reference's; numbers "
        "compare by value (`1,000` = `1000.0`). Reported as eval_exact_match."
    )
    num_examples: int = Field(
        16, ge=1, description="Validation rows generated for at every evaluation (the same "
        "seeded sample each time, drawn with data.split_seed). Cost grows linearly with it."
    )
    max_new_tokens: int = Field(
        256, ge=1, description="Generation stops at EOS or after this many tokens; answers that "
        "do not fit score 0. 256 fits 97% of GSM8K's reference answers (SmolLM2 tokenizer: median "
        "~117 tokens, p95 ~230; 128 fits ~58%). Only a completion that never stops costs it all."
    )
    batch_size: int | None = Field(
        None, ge=1, description="Prompts generated together. Default: train.eval_batch_size. A "
        "batch runs until its longest completion ends, so on CPU 1 is fastest (README: "
        "Metrics); on a GPU, larger batches are."
    )


def same_split_message(split: str, earlier: str, what: str) -> str:
    """`data.validation: ... is the same file as data.train ...` with the fix for that split."""
    return (f"data.{split}: {what} is the same file as data.{earlier}, so "
            f"{'selection' if split == 'validation' else 'the final score'} would be measured "
            f"on examples already used; give a held-out file, or drop data.{split}"
            + (" to carve validation from train" if split == "validation" else ""))


class LoraConfig(StrictModel):
    r: int = Field(8, ge=1, le=1024, description="Adapter rank: higher, more capacity and memory.")
    alpha: float = Field(16.0, gt=0, description="Scale is alpha / r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or `all-linear`. Every name must "
        "match a module of the model (checked before the sweep)."
    )

    @field_validator("target_modules", mode="before")
    @classmethod
    def _a_list_or_all_linear(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "all-linear":
            hint = (" (did you mean 'all-linear'?)"
                    if value.replace("_", "-").lower() in ("all-linear", "alllinear", "all")
                    else "")
            example = "[q_proj, v_proj]" if hint else f"[{value}]"
            raise ValueError(
                f"{value!r} is neither all-linear nor a list{hint}; write all-linear, or a list "
                f"of module names, e.g. {example}"
            )
        return value

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and not value:
            raise ValueError("[] adapts nothing, so every trial would fail; list module names "
                             "(e.g. [q_proj, v_proj]) or use all-linear")
        if isinstance(value, list) and len(set(value)) != len(value):
            raise ValueError(f"{value} lists a module twice; list each name once")
        return value


class TrainConfig(StrictModel):
    learning_rate: float = Field(2e-4, gt=0.0, lt=1.0, description="Peak AdamW learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per micro-batch.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Micro-batches per optimizer step (effective batch multiplier)."
    )
    epochs: float = Field(1.0, gt=0.0, description="Passes over train; ignored if max_steps set.")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; overrides epochs.")
    lr_schedule: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="Decay after warmup (constant: warmup, then flat)."
    )
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of steps warming up.")
    weight_decay: float = Field(0.0, ge=0.0, lt=1.0, description="AdamW decoupled decay.")
    dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="Override the model's own dropout probabilities."
    )
    max_grad_norm: float | None = Field(1.0, gt=0.0, description="Clip; null disables.")
    adam_beta1: float = Field(0.9, ge=0.0, lt=1.0, description="AdamW beta1.")
    adam_beta2: float = Field(0.999, ge=0.0, lt=1.0, description="AdamW beta2.")
    adam_epsilon: float = Field(1e-8, gt=0.0, description="AdamW epsilon.")
    eval_every_steps: int = Field(50, ge=1, description="Evaluate, report and checkpoint.")
    eval_batch_size: int | None = Field(None, ge=1, description="Default: batch_size.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="fp16 needs a GPU; bf16 works on CPU and Ampere+ GPUs."
    )
    gradient_checkpointing: bool = Field(False, description="Less memory, ~30% slower steps.")
    seed: int = Field(
        42, ge=-TRAIN_SEED_LIMIT, le=TRAIN_SEED_LIMIT,
        description="Seeds init, data order and dropout (exact resumes); negative seeds too."
    )
    finetune: Literal["lora", "full"] = Field(
        "lora", description="lora: train adapters (the `lora` section); full: every weight."
    )
    torch_threads: int | None = Field(
        None, ge=1, description="Intra-op CPU threads per trial. Default: the trial's CPUs."
    )
    report_test_metrics: bool = Field(
        False, description="Also score the test split at every evaluation and report it as "
        "`test_*` (learning-curve tables for benchmarks). Never used for selection; costs one "
        "more evaluation pass per report."
    )
    generation_eval: GenerationEvalConfig | None = Field(
        None, description="Causal LM: also generate on a sample of validation and report "
        "eval_exact_match (selectable as the metric), e.g. `{num_examples: 16, max_new_tokens: "
        "256}`. Slow: one generation per example at every evaluation (README: Metrics)."
    )


    @field_validator("seed", mode="before")
    @classmethod
    def _seed_torch_takes(cls, seed: Any) -> Any:
        if isinstance(seed, int) and not isinstance(seed, bool) and abs(seed) > TRAIN_SEED_LIMIT:
            raise ValueError(
                f"{seed} is outside -2**46..2**46 (+-{TRAIN_SEED_LIMIT}): the epoch order seeds "
                "torch with seed * 100003 + epoch, which must fit its 64 bits; use a smaller "
                f"seed, e.g. {seed % 2**32}")
        return seed


class DistillConfig(StrictModel):
    """Knowledge distillation: the trials train the student (`model`) on a mix of the gold
    labels and a teacher's soft labels. The loss is alpha * KL * T^2 + (1 - alpha) * CE; the
    teacher's outputs are computed once per sweep, before the trials start, and shared."""

    teacher: str = Field(
        description="The teacher: a hub id, a local model folder (a merged `sweep export` "
        "folder; an adapter export loads on its base), or an experiment folder or URI of an "
        "earlier sweep (its best trial, or `teacher_trial`)."
    )
    teacher_trial: str | None = Field(
        None, description="With an experiment as teacher: the trial id whose best checkpoint "
        "teaches (default: the experiment's best trial)."
    )
    teacher_revision: str | None = Field(None, description="Hub revision of a hub teacher.")
    alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of the KL term; 1 - alpha weights the "
        "cross-entropy on the gold labels. Searchable as distill.alpha."
    )
    temperature: float = Field(
        2.0, gt=0.0, le=100.0, description="Softmax temperature T of both distributions in the "
        "KL term (which is scaled by T^2). Searchable as distill.temperature."
    )
    kl: Literal["forward", "reverse"] = Field(
        "forward", description="forward: KL(teacher || student), mass-covering (Hinton et al.); "
        "reverse: KL(student || teacher), mode-seeking (MiniLLM). Searchable as distill.kl."
    )
    top_k: int = Field(
        64, ge=1, le=4096, description="causal_lm: the teacher's top-k tokens kept per "
        "completion position (the KL runs over them, both distributions renormalized on them). "
        "Classification keeps every class."
    )
    batch_size: int = Field(32, ge=1, description="Examples per teacher forward pass.")

    @field_validator("teacher")
    @classmethod
    def _given(cls, teacher: str) -> str:
        return _not_blank(teacher, "a hub id, a model folder or an experiment folder")


class TrialSpec(StrictModel):
    """Everything fixed for a trial; the searcher's picks are merged into `train` and `lora`."""

    task: Task
    model: ModelConfig
    data: DataConfig
    train: TrainConfig = TrainConfig()
    lora: LoraConfig = LoraConfig()
    distill: DistillConfig | None = None
    num_labels: int | None = None
    label_names: list[str] | None = None  # in id order; the model's id2label
    workers: int = Field(1, ge=1, description="Data-parallel processes training this trial.")
    # With workers > 1: how the Ray Train workers shard the model, and what each one holds.
    strategy: Literal["ddp", "fsdp"] = "ddp"
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    metric: str = "eval_loss"
    mode: Literal["min", "max"] = "min"


SEARCHABLE_SECTIONS: dict[str, type[StrictModel]] = {
    "train": TrainConfig, "lora": LoraConfig, "distill": DistillConfig,
}
# The fields a section lets a search change, where that is not all of them: the teacher runs
# once per sweep, before the trials, so its source, top_k and batch size are the config's own.
SEARCHABLE_FIELDS: dict[str, frozenset[str]] = {
    "distill": frozenset({"alpha", "temperature", "kl"}),
}

# Metrics each trainable reports at every evaluation, and the direction that is better.
REPORTED_METRICS: dict[str, dict[str, str]] = {
    "causal_lm": {
        "eval_loss": "min",
        "eval_perplexity": "min",
        "eval_token_accuracy": "max",
        "train_loss": "min",
    },
    "sequence_classification": {
        "eval_loss": "min",
        "eval_accuracy": "max",
        "eval_precision": "max",
        "eval_recall": "max",
        "eval_f1": "max",
        "train_loss": "min",
    },
}


Mode = Literal["min", "max"]


def is_better(value: float, than: float, mode: str) -> bool:
    """Is `value` strictly better than `than` when `mode` is min (lower) or max (higher)?"""
    return value < than if mode == "min" else value > than


def best_first(value: float, mode: str) -> float:
    """Sort key that puts the best value first under `mode`."""
    return value if mode == "min" else -value


def merge_trial_config(spec: TrialSpec, sampled: dict[str, Any]) -> TrialSpec:
    """The spec with the searcher's nested picks (`{"train": {...}, "lora": {...}}`) merged in.

    Only the sections the searcher touched are validated again, so a bad sample fails loudly
    here instead of training with a silently wrong value.
    """
    update: dict[str, StrictModel] = {}
    for section, values in sampled.items():
        if section not in SEARCHABLE_SECTIONS:
            raise ValueError(
                f"sampled section {section!r} is not searchable; use one of "
                f"{sorted(SEARCHABLE_SECTIONS)}"
            )
        fixed = set(values) - SEARCHABLE_FIELDS.get(section, set(values))
        if fixed:
            raise ValueError(f"sampled {section} fields {sorted(fixed)} are fixed for the sweep")
        current = getattr(spec, section)
        if current is None:  # the sweep config refuses this (search_space.distill.* alone)
            raise ValueError(f"sampled section {section!r} is not in this trial's config")
        update[section] = SEARCHABLE_SECTIONS[section].model_validate(
            {**current.model_dump(), **values})
    return spec.model_copy(update=update)


def _did_you_mean(word: str, options: list[str]) -> str:
    # orchestrator.config.errors.did_you_mean, which trainables may not import.
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
