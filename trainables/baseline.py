"""The untrained model's validation metrics: the bar every trial must clear."""

from __future__ import annotations

import torch

from trainables import modeling
from trainables.config import TrialSpec
from trainables.data import PreparedData
from trainables.evaluation import evaluate
from trainables.generation import generation_metrics
from trainables.runtime import pick_device, threads_for_trial


def evaluate_untrained(trial: TrialSpec, data: PreparedData, pad_id: int) -> dict[str, float]:
    torch.set_num_threads(threads_for_trial(trial))
    device = pick_device()
    torch.manual_seed(trial.train.seed)  # a new classification head is random: make it repeatable
    model = modeling.load_model(trial.model, trial.task, num_labels=data.num_labels,
                                pad_token_id=pad_id, label_names=data.label_names).to(device)
    batch_size = trial.train.eval_batch_size or trial.train.batch_size
    metrics = evaluate(
        model, data.validation, task=trial.task, batch_size=batch_size,
        pad_id=pad_id, device=device, num_labels=data.num_labels,
        label_names=data.label_names, positive_label_id=data.positive_label_id,
    )
    if trial.train.generation_eval is not None and data.generation_validation:
        metrics |= generation_metrics(model, data.generation_validation,
                                      modeling.load_tokenizer(trial.model),
                                      trial.train.generation_eval, batch_size=batch_size,
                                      device=device)
    return metrics
