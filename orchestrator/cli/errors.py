"""The one way every `sweep` command reports a user's mistake: `error: <message>` on stderr and
exit status 2, no traceback. Anything not listed as a user error is a bug and keeps its
traceback."""

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
def user_errors(*also: type[BaseException]) -> Iterator[None]:
    """Report `UserError`s (and the exception types in `also`) as `error: ...`."""
    caught: tuple[type[BaseException], ...] = (UserError, *also)
    try:
        yield
    except caught as err:
        fail(err)
