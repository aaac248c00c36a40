"""Errors a user can fix, and the one "did you mean" every message uses.

A `UserError` is printed by the CLI as `error: ...` without a traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

DID_YOU_MEAN_CUTOFF = 0.6  # difflib similarity from which a name counts as a likely typo


class UserError(Exception):
    """A mistake in what the user gave (config, paths, arguments); the message says the fix."""


class MissingDependencyError(UserError, ImportError):
    """An optional package the config asks for is not installed; the message says how to
    install it (or what to remove from the config)."""


class ConfigError(UserError, ValueError):
    """Every problem with a config, one per line."""

    def __init__(self, problems: list[str], source: str = "sweep config") -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Invalid {source} ({len(problems)} {noun}):\n{lines}")


def closest(word: str, options: Iterable[str]) -> str | None:
    """The option most like `word`, if any is close enough to be a typo of it."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=DID_YOU_MEAN_CUTOFF)
    return close[0] if close else None


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """` (did you mean 'x'?)`, or "" when nothing is close."""
    match = closest(word, options)
    return f" (did you mean {match!r}?)" if match else ""
