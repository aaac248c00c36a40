"""The `sweep` command: `main` runs it; subcommands are registered per phase (run, post, report,
cluster). Heavy libraries are imported inside the commands, so `sweep --help` stays fast."""

from orchestrator.cli.main import main

__all__ = ["main"]
