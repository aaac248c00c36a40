"""The user's mistakes in how a sweep is run (as opposed to what it runs: that is the config's).

Each is a `UserError` (the CLI prints `error: ...`, no traceback) and also the builtin it
replaced, so code that caught that builtin still works.
"""

from __future__ import annotations

from orchestrator.config.errors import UserError


class ClusterConnectionError(UserError, ConnectionError):
    """The Ray address (`--address`, RAY_ADDRESS) is malformed, or no Ray cluster answers there;
    the message names the address and how to start a cluster or run without one."""
