"""Code that runs inside a trial. Never imports `orchestrator`.

The trainables are looked up by task in `registry.TRAINABLES` and imported on first use.
"""

from trainables.registry import TRAINABLES, get_trainable

__all__ = ["TRAINABLES", "get_trainable"]
