"""Driver side of the sweep orchestrator: config, search, scheduling, launch, results."""

from orchestrator.config import SweepConfig
from orchestrator.launch import launch
from orchestrator.loading import ConfigError, load_config
from orchestrator.results import SweepResult, load_results

__all__ = ["ConfigError", "SweepConfig", "SweepResult", "launch", "load_config", "load_results"]
