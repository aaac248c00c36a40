"""The user's mistakes in a post-sweep request (export, evaluate, soup, report).

Each is a `UserError` (the CLI prints `error: ...`, no traceback) and also the builtin it
replaced, so code that caught that builtin still works.
"""

from __future__ import annotations

from orchestrator.config.errors import UserError


class OutputExistsError(UserError, FileExistsError):
    """The output folder already holds something and overwriting was not asked for."""


class UnsupportedRequestError(UserError, ValueError):
    """What was asked does not fit this experiment or these options (a soup method the sweep's
    metric or checkpoints cannot serve, no test split, ...); the message says what would."""


class PredictInputError(UserError, ValueError):
    """What `sweep predict` was given cannot be run: no such path, a folder that is neither an
    experiment nor an exported model, or inputs that do not fit the prompt template."""
