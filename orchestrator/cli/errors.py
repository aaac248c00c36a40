"""The one way every `sweep` command reports a user's mistake: `error: <message>` on stderr and
exit status 2, no traceback. A user's mistake is a `UserError` (each phase raises its own
subclasses: `orchestrator.experiment.errors`, `orchestrator.post.errors`, ...); anything else,
a plain RuntimeError or ValueError included, is a bug and keeps its traceback."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import click

from orchestrator.config.errors import UserError


def fail(err: BaseException) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(2)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report a `UserError` raised in the block as `error: ...` (exit status 2)."""
    try:
        yield
    except UserError as err:
        fail(err)
