"""The user's mistakes and the cluster's refusals, as `cluster` reports them.

Each is a `UserError` (the CLI prints `error: ...`, no traceback) and also a `RuntimeError`,
the type Ray's Jobs client raises for a refused request.
"""

from __future__ import annotations

from orchestrator.config.errors import UserError


class ClusterError(UserError, RuntimeError):
    """The cluster cannot be reached or refused the request; the message says what to do."""


class LocalClusterError(ClusterError):
    """`cluster.local` cannot start its cluster: one already runs, or it did not come up."""
