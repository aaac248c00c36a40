"""The user's mistakes about an experiment folder: it is not there, not a sweep, has nothing to
read yet, or lacks the trial or checkpoint asked for.

Each is a `UserError` (the CLI prints `error: ...`, no traceback) and also the builtin it
replaced, so code that caught that builtin still works.
"""

from __future__ import annotations

from orchestrator.config.errors import UserError


class ExperimentNotFoundError(UserError, FileNotFoundError):
    """The path is no experiment made by `sweep run`: missing, or without its sweep config."""


class ExperimentExistsError(UserError, FileExistsError):
    """A new sweep would write into an experiment that already exists."""


class NoTrialResultsError(UserError, RuntimeError):
    """The experiment has nothing to read yet: no Tune state saved, or no trial reported the
    sweep metric."""


class TrialNotFoundError(UserError, ValueError):
    """The trial id asked for is not one of the experiment's trials with a checkpoint."""


class CheckpointNotFoundError(UserError, RuntimeError):
    """No checkpoint (or fewer than asked for) to load, export or combine."""


class BrokenCheckpointError(UserError, FileNotFoundError):
    """A checkpoint folder lacks a file every checkpoint has (spec.json, metrics.json, its
    weights), or holds one that is not readable: deleted in part, or copied in part."""


class CorruptExperimentStateError(UserError, ValueError):
    """No experiment_state-*.json of Tune's in the folder can be read (each was cut off
    mid-write, or copied in part), so there is no list of trials to read."""
