"""Driver side of the sweep orchestrator: config, search, scheduling, launch, results."""

from orchestrator.config import SweepConfig
from orchestrator.export import export_best
from orchestrator.final_eval import evaluate_test_split
from orchestrator.launch import launch
from orchestrator.loading import ConfigError, load_config
from orchestrator.results import SweepResult, load_results
from orchestrator.resume import resume
from orchestrator.soup import make_soup

__all__ = [
    "ConfigError",
    "SweepConfig",
    "SweepResult",
    "evaluate_test_split",
    "export_best",
    "launch",
    "load_config",
    "load_results",
    "make_soup",
    "resume",
]
