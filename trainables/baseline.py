"""The untrained model's validation metrics: the bar every trial must clear."""

from __future__ import annotations

import torch

from trainables import modeling
from trainables.config import TrialSpec
from trainables.data import PreparedData
from trainables.evaluation import evaluate
from trainables.runtime import pick_device, threads_for_trial


def evaluate_untrained(trial: TrialSpec, data: PreparedData, pad_id: int) -> dict[str, float]:
    torch.set_num_threads(threads_for_trial(trial))
    device = pick_device()
    torch.manual_seed(trial.train.seed)  # a new classification head is random: make it repeatable
    model = modeling.load_model(trial.model, trial.task, num_labels=data.num_labels,
                                pad_token_id=pad_id).to(device)
    return evaluate(
        model, data.validation, task=trial.task,
        batch_size=trial.train.eval_batch_size or trial.train.batch_size,
        pad_id=pad_id, device=device, num_labels=data.num_labels,
    )
