"""The checkpoint a trial resumes from: the newest intact one of those Tune kept.

Used where the checkpoint is read: in the Tune trial process (one worker), or in rank 0 of a
data-parallel trial's Ray Train workers, which may run on another node and read it from the
shared storage.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainables import checkpointing

log = logging.getLogger(__name__)


def _candidate_checkpoints(checkpoint: Any) -> list[Any]:
    """The checkpoint Tune offers, then the trial's older ones, newest first."""
    from pyarrow.fs import FileSelector
    from ray.tune import Checkpoint

    parent = posixpath.dirname(checkpoint.path.rstrip("/"))
    try:
        infos = checkpoint.filesystem.get_file_info(FileSelector(parent))
    except OSError:
        return [checkpoint]
    older = sorted((i.path for i in infos if i.base_name.startswith("checkpoint_")
                    and i.path.rstrip("/") != checkpoint.path.rstrip("/")
                    and i.base_name < posixpath.basename(checkpoint.path.rstrip("/"))),
                   reverse=True)
    return [checkpoint] + [Checkpoint(p, filesystem=checkpoint.filesystem) for p in older]


@contextlib.contextmanager
def intact_checkpoint(checkpoint: Any) -> Iterator[Path | None]:
    """A local folder of the newest intact checkpoint (torn or corrupt ones are skipped)."""
    for candidate in _candidate_checkpoints(checkpoint):
        with candidate.as_directory() as folder:
            problem = checkpointing.verify(Path(folder))
            if problem is None:
                yield Path(folder)
                return
            log.warning("skipping checkpoint %s: %s", candidate.path, problem)
    log.warning("no intact checkpoint left; the trial starts from scratch")
    yield None
