"""Ray's own output, kept off the console: a log file in the experiment folder.

`sweep run` and `sweep resume` (and `launch()` / `resume()`) show this project's lines, the
live table and the summary. What Ray says goes to `EXPERIMENT/logs/ray.log`:

- the driver's `ray` loggers: `ray.init` (token authentication, "Started a local Ray
  instance"), Ray Tune (experiment-state syncs, warnings about trials);
- the stdout and stderr of every trial and task that Ray forwards to the driver
  (`log_to_driver`), one line each, prefixed as Ray prefixes them on the console:
  `(train_causal_lm pid=123, ip=10.0.0.2) Checkpoint successfully created at: ...`.
  This covers every node of a cluster joined with `--address HOST:6379` or `auto`. A Ray
  Client connection (`ray://`) streams worker output to the console itself, outside this.

Ray Tune's own console output (its configuration box, a TensorBoard hint pointing into Ray's
temporary folder, progress tables) is switched off by `tune_console_off`; `launch()` prints its
own TensorBoard hint, naming the experiment.

Lines are held in memory until the experiment folder is known to be this sweep's own
(`RayLog.attach`); if the sweep fails with a bug or a Ray error before that, they are printed
to stderr, so nothing Ray said is lost. On object storage (`s3://...`) the file is written on
this machine (`$TMPDIR/sweep-logs/NAME/ray.log`) and uploaded to `EXPERIMENT/logs/ray.log`
when the sweep ends or fails; a resumed sweep appends to it. When `launch()` started Ray itself,
Ray's output keeps going to the file until Ray shuts down (a trial's last lines reach the
driver after its end); when it joined a Ray the caller had connected, the console gets Ray's
output back when the sweep ends. `verbose=True` leaves all of Ray's console output as it is.
Ray's session logs (`/tmp/ray/session_latest/logs` on each node) keep their own copies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from orchestrator.config.errors import UserError
from orchestrator.experiment.layout import RAY_LOG_FILE
from orchestrator.experiment.storage import Storage, open_storage

_WORKER_HANDLER = "sweep_ray_log"  # our handler's name in Ray's worker-output dispatcher
_RAY_PRINT_HANDLER = "ray_print_logs"  # Ray's own: prints worker output to the console
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextlib.contextmanager
def tune_console_off() -> Iterator[None]:
    """Ray Tune without its own console output, during one `fit()`.

    Tune's default output engine prints its configuration box and a TensorBoard hint even at
    `verbose=0`; its legacy engine (`RAY_AIR_NEW_OUTPUT=0`, read when `fit()` starts) prints
    nothing at `verbose=0`. The variable is set back afterwards.
    """
    before = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = before


class _LineHandler(logging.Handler):
    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self.write = write
        self.setFormatter(_FORMAT)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:  # a log line must never break the sweep
            self.handleError(record)


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def _ray_loggers() -> list[logging.Logger]:
    """`ray` and the `ray.*` loggers that print to the console by themselves (ray.data)."""
    loggers = [logging.getLogger("ray")]
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (name.startswith("ray.") and isinstance(logger, logging.Logger)
                and _console_handlers(logger)):
            loggers.append(logger)
    return loggers


def worker_lines(data: dict[str, Any]) -> list[str]:
    """One batch of forwarded worker output as log lines, prefixed like Ray's console."""
    lines = [str(line) for line in data.get("lines", [])]
    pid = data.get("pid")
    if pid == "autoscaler":
        from ray._private import worker as ray_worker

        lines = list(ray_worker.filter_autoscaler_events(lines))
        prefix = "(autoscaler)"
    elif pid == "raylet":
        prefix = f"(raylet, ip={data.get('ip')})"
    else:
        name = data.get("actor_name") or data.get("task_name")
        prefix = f"({name + ' ' if name else ''}pid={pid}, ip={data.get('ip')})"
    stream = " stderr" if data.get("is_err") else ""
    return [f"{prefix}{stream} {_ANSI.sub('', line).rstrip()}" for line in lines]


class RayLog:
    """Where Ray's output goes during one sweep: see the module docstring.

    >>> with RayLog(verbose=False) as ray_log:  # doctest: +SKIP
    ...     ensure_ray(address)
    ...     ray_log.capture_workers()
    ...     ray_log.attach("/results/my-sweep")
    ...     run_the_sweep()
    >>> ray_log.location  # doctest: +SKIP
    '/results/my-sweep/logs/ray.log'
    """

    def __init__(self, verbose: bool = False, *, title: str = "sweep") -> None:
        self.verbose = verbose
        self.title = title
        self.location: str | None = None  # the file's final place: a path or storage URI
        self.local_path: Path | None = None
        self._experiment: Storage | None = None
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._file: IO[str] | None = None
        self._handler = _LineHandler(self.write)
        self._saved: list[tuple[logging.Logger, list[logging.Handler]]] = []
        self._ray_printer: list[tuple[str, Callable[..., Any]]] = []
        self._owns_ray = False

    # --- what goes in ---------------------------------------------------------------------

    def write(self, line: str) -> None:
        with self._lock:
            if self._file is None:
                self._pending.append(line)
            else:
                self._file.write(line + "\n")
                self._file.flush()

    def __enter__(self) -> RayLog:
        """Take Ray's driver loggers off the console (before `ray.init`, which logs)."""
        import ray

        self._owns_ray = not ray.is_initialized()
        if self.verbose:
            return self
        for logger in _ray_loggers():
            console = _console_handlers(logger)
            for handler in console:
                logger.removeHandler(handler)
            logger.addHandler(self._handler)
            self._saved.append((logger, console))
        return self

    def capture_workers(self) -> None:
        """Send the worker output Ray forwards to this driver here (call after `ray.init`)."""
        if self.verbose:
            return
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

        def handle(data: dict[str, Any]) -> None:
            try:
                for line in worker_lines(data):
                    self.write(line)
            except Exception as err:  # this runs on Ray's log thread: never end it
                self.write(f"(could not write a batch of worker output: {err!r})")

        with dispatcher._lock:
            self._ray_printer = [(n, h) for n, h in dispatcher.handlers
                                 if n == _RAY_PRINT_HANDLER]
        dispatcher.remove_handler(_RAY_PRINT_HANDLER)
        dispatcher.remove_handler(_WORKER_HANDLER)  # an earlier sweep's, in this process
        dispatcher.add_handler(_WORKER_HANDLER, handle)

    def attach(self, experiment_uri: str) -> None:
        """Write to the experiment's log from now on, the lines held so far first."""
        if self.verbose:
            return
        experiment = open_storage(experiment_uri)
        self._experiment = experiment
        if experiment.is_local:
            self.local_path = Path(experiment.path(*RAY_LOG_FILE))
        else:
            name = experiment.root.rstrip("/").rsplit("/", 1)[-1]
            self.local_path = Path(tempfile.gettempdir()) / "sweep-logs" / name / RAY_LOG_FILE[-1]
        self.location = experiment.uri_of(*RAY_LOG_FILE)
        self.local_path.parent.mkdir(parents=True, exist_ok=True)
        # Remote: this session's lines only; the stored log is prepended when it is uploaded.
        mode = "a" if experiment.is_local else "w"
        log_file = self.local_path.open(mode, encoding="utf-8")
        with self._lock:
            log_file.write(f"=== {self.title}, {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
            log_file.writelines(line + "\n" for line in self._pending)
            log_file.flush()
            self._pending.clear()
            self._file = log_file

    # --- the end --------------------------------------------------------------------------

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.verbose:
            return
        if self._file is None and error is not None and not isinstance(error, UserError):
            # Failed before the log had a place: what Ray said may be why.
            with self._lock:
                for line in self._pending:
                    print(line, file=sys.stderr)
                self._pending.clear()
        self._upload()
        if self.location is not None and error is not None:
            print(f"Ray's log: {self.location}", file=sys.stderr, flush=True)
        if not self._owns_ray:
            self._give_back_console()

    def _upload(self) -> None:
        experiment, local = self._experiment, self.local_path
        if experiment is None or local is None or experiment.is_local:
            return
        try:
            with self._lock:
                assert self._file is not None
                self._file.flush()
                text = local.read_text(encoding="utf-8")
            if experiment.exists(*RAY_LOG_FILE):  # a resumed sweep: keep the earlier sessions
                text = experiment.read_text(*RAY_LOG_FILE) + text
            experiment.write_text(text, *RAY_LOG_FILE)
        except OSError as err:
            print(f"could not upload Ray's log to {self.location} ({err}); it is at {local}",
                  file=sys.stderr, flush=True)
            self.location = str(local)

    def _give_back_console(self) -> None:
        for logger, handlers in self._saved:
            logger.removeHandler(self._handler)
            for handler in handlers:
                logger.addHandler(handler)
        self._saved.clear()
        if self._ray_printer:
            from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

            dispatcher.remove_handler(_WORKER_HANDLER)
            for name, printer in self._ray_printer:
                dispatcher.add_handler(name, printer)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
