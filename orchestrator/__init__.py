"""Driver side of the sweep orchestrator, one package per phase of the pipeline:

    config/      the sweep config: schema, loading (with `--set`), the generated reference
    search/      search space, search algorithms, schedulers, scheduler state across resumes
    run/         launch: preflight (the plan), storage checks, the Tuner, progress, resume
    experiment/  what a sweep leaves on storage: storage access, results, checkpoints
    post/        after the sweep: export, predict, test evaluation, merging, soups, students,
                 report
    cli/         the `sweep` command

The public names below are imported on first use, so `import orchestrator` stays cheap.

>>> from orchestrator import launch, load_config  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "ConfigError": "orchestrator.config.errors",
    "SweepConfig": "orchestrator.config.schema",
    "load_config": "orchestrator.config.loading",
    "launch": "orchestrator.run.launch",
    "resume": "orchestrator.run.resume",
    "SweepResult": "orchestrator.experiment.results",
    "load_results": "orchestrator.experiment.results",
    "export_best": "orchestrator.post.export",
    "evaluate_test_split": "orchestrator.post.final_eval",
    "make_soup": "orchestrator.post.soup",
    "load_predictor": "orchestrator.post.predict",
    "make_student": "orchestrator.post.student",
}

__all__ = [
    "ConfigError",
    "SweepConfig",
    "SweepResult",
    "evaluate_test_split",
    "export_best",
    "launch",
    "load_config",
    "load_predictor",
    "load_results",
    "make_soup",
    "make_student",
    "resume",
]

if TYPE_CHECKING:
    from orchestrator.config.errors import ConfigError
    from orchestrator.config.loading import load_config
    from orchestrator.config.schema import SweepConfig
    from orchestrator.experiment.results import SweepResult, load_results
    from orchestrator.post.export import export_best
    from orchestrator.post.final_eval import evaluate_test_split
    from orchestrator.post.predict import load_predictor
    from orchestrator.post.soup import make_soup
    from orchestrator.post.student import make_student
    from orchestrator.run.launch import launch
    from orchestrator.run.resume import resume


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
