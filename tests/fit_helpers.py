"""Helpers of the tests that call `trainables.loop.fit` directly, on ranks or in one process."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweep_helpers import ROOT, lm_config


def full_ft_plan(model_dir: Path, train: dict[str, Any], *, train_examples: int,
                 eval_examples: int = 16) -> Any:
    """The trial plan of a full fine-tuning sweep of `model_dir` on the quickstart's data."""
    from orchestrator.config.loading import load_config
    from orchestrator.run.preflight import build_plan

    config = lm_config(model_dir, train={**train, "finetune": "full"})
    config["data"] = {**config["data"], "max_train_examples": train_examples,
                      "max_eval_examples": eval_examples}
    cfg = load_config(config)
    cfg.base_dir = str(ROOT)
    return build_plan(cfg)


def keep_checkpoints(out: Path) -> Callable[[dict, Path | None], None]:
    """A report that copies rank 0's checkpoint to out/step-N (the others report nothing)."""
    def report(metrics: dict, folder: Path | None) -> None:
        if folder is not None:
            shutil.copytree(folder, out / f"step-{int(metrics['step'])}")
    return report


def checkpoint_metrics(folder: Path) -> dict:
    from trainables.checkpointing import METRICS_FILE

    return json.loads((folder / METRICS_FILE).read_text())
