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
(`RayLog.attach`), at most the last `MAX_PENDING_LINES`; if the sweep fails with a bug or a Ray
error before that, they are printed to stderr, so nothing Ray said is lost. On object storage
(`s3://...`) the file is written on this machine (`$TMPDIR/sweep-logs/NAME/ray.log`) and
uploaded to `EXPERIMENT/logs/ray.log` when the sweep ends or fails; a resumed sweep appends to
it.

Ray's loggers and its worker-output dispatcher belong to the process, so there is one capture
per process, and each sweep points it at its own file. When it joined a Ray the caller had
connected, the console gets Ray's output back when the sweep ends. When a sweep started Ray
itself (`launch()` never shuts it down), Ray's output keeps going to that sweep's file after
its end (a trial's last lines reach the driver late; on object storage they stay in the local
copy) until the next sweep in this process takes it over for its own file, or `ray.shutdown()`
gives the console back; either closes the file. `give_back_console()` does it at once.
`verbose=True` leaves all of Ray's console output as it is, an earlier sweep's capture included.
Ray's session logs (`/tmp/ray/session_latest/logs` on each node) keep their own copies.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections import deque
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
# Lines held before the experiment folder is known (ray.init, preflight): the oldest are dropped.
MAX_PENDING_LINES = 10_000


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


class _Capture:
    """The one capture of Ray's output in this process; each sweep points it at its own file.

    Its lock guards where lines go (file or held lines) and never wraps a call into Ray's
    dispatcher, whose own lock is held while it calls `_worker_output`.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._handler = _LineHandler(self.write)
        self._saved: dict[logging.Logger, list[logging.Handler]] = {}  # their console handlers
        self._ray_printer: list[tuple[str, Callable[..., Any]]] = []
        self._workers = False  # our handler is in Ray's worker-output dispatcher
        self._file: IO[str] | None = None
        self._pending: deque[str] = deque(maxlen=MAX_PENDING_LINES)
        self._dropped = 0
        self._in_sweep = False
        self._ray_started_by_a_sweep = False
        self._ray_shutdown: Callable[..., Any] | None = None  # Ray's own, while we watch it
        self._watcher: Callable[..., Any] | None = None

    def write(self, line: str) -> None:
        with self.lock:
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()
            elif self._in_sweep:
                if len(self._pending) == self._pending.maxlen:
                    self._dropped += 1
                self._pending.append(line)
            else:  # a line in flight while the console was given back
                print(line, file=sys.stderr)

    def start_sweep(self) -> None:
        """Take Ray's driver loggers off the console; a finished sweep's file is closed."""
        import ray

        if not ray.is_initialized():
            self._ray_started_by_a_sweep = True  # launch() is about to start it
        for logger in _ray_loggers():
            console = _console_handlers(logger)
            for handler in console:
                logger.removeHandler(handler)
            logger.addHandler(self._handler)  # once: logging skips a handler it already has
            self._saved.setdefault(logger, []).extend(console)
        self._watch_shutdown()
        with self.lock:
            finished, self._file = self._file, None
            self._pending = deque(maxlen=MAX_PENDING_LINES)
            self._dropped = 0
            self._in_sweep = True
        if finished is not None:
            finished.close()

    def capture_workers(self) -> None:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

        with dispatcher._lock:
            printers = [(n, h) for n, h in dispatcher.handlers if n == _RAY_PRINT_HANDLER]
        dispatcher.remove_handler(_RAY_PRINT_HANDLER)
        if printers:  # a new ray.init installed its own; else the one taken earlier stands
            self._ray_printer = printers
        if not self._workers:
            dispatcher.add_handler(_WORKER_HANDLER, self._worker_output)
            self._workers = True

    def _worker_output(self, data: dict[str, Any]) -> None:
        try:
            for line in worker_lines(data):
                self.write(line)
        except Exception as err:  # this runs on Ray's log thread: never end it
            self.write(f"(could not write a batch of worker output: {err!r})")

    def attach(self, log_file: IO[str], header: str) -> None:
        """Write to `log_file` from now on, the lines held so far first."""
        with self.lock:
            log_file.write(header)
            if self._dropped:
                log_file.write(f"({self._dropped} earlier lines dropped: only the last "
                               f"{self._pending.maxlen} are held until the log has a place)\n")
            log_file.writelines(line + "\n" for line in self._pending)
            log_file.flush()
            self._pending.clear()
            self._dropped = 0
            self._file = log_file

    def take_pending(self) -> list[str]:
        with self.lock:
            lines = list(self._pending)
            self._pending.clear()
            return lines

    def end_sweep(self) -> None:
        """Keep writing to the sweep's file while a Ray a sweep started runs; else release."""
        with self.lock:
            self._in_sweep = False
            keep = self._ray_started_by_a_sweep and self._file is not None
        if not keep:
            self.release()

    def release(self) -> None:
        """Ray's output back on the console, the file closed, nothing held."""
        for logger, handlers in self._saved.items():
            logger.removeHandler(self._handler)
            for handler in handlers:
                logger.addHandler(handler)
        self._saved.clear()
        if self._workers:
            import ray
            from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

            dispatcher.remove_handler(_WORKER_HANDLER)
            if ray.is_initialized():  # after ray.shutdown, the next ray.init adds its own
                for name, printer in self._ray_printer:
                    dispatcher.add_handler(name, printer)
            self._workers = False
        self._ray_printer = []
        with self.lock:
            log_file, self._file = self._file, None
            self._pending.clear()
            self._dropped = 0
        if log_file is not None:
            log_file.close()
        self._unwatch_shutdown()

    def _ray_shut_down(self) -> None:
        self._ray_started_by_a_sweep = False
        with self.lock:
            in_sweep = self._in_sweep
        if not in_sweep:  # during a sweep, its end releases
            self.release()

    def _watch_shutdown(self) -> None:
        """`ray.shutdown()` gives the console back (Ray offers no hook to be told)."""
        if self._ray_shutdown is not None:
            return
        import ray

        shutdown = ray.shutdown

        @functools.wraps(shutdown)
        def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                return shutdown(*args, **kwargs)
            finally:
                self._ray_shut_down()

        self._ray_shutdown, self._watcher = shutdown, watched
        ray.shutdown = watched

    def _unwatch_shutdown(self) -> None:
        import ray

        if self._ray_shutdown is not None and ray.shutdown is self._watcher:
            ray.shutdown = self._ray_shutdown
        self._ray_shutdown = self._watcher = None


_CAPTURE = _Capture()


def give_back_console() -> None:
    """Ray's output back on the console now, as `ray.shutdown()` does after a sweep that
    started Ray (see the module docstring)."""
    _CAPTURE.release()


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

    def __enter__(self) -> RayLog:
        """Take Ray's driver loggers off the console (before `ray.init`, which logs)."""
        if self.verbose:
            _CAPTURE.release()  # an earlier sweep's: this one shows what Ray says
        else:
            _CAPTURE.start_sweep()
        return self

    def capture_workers(self) -> None:
        """Send the worker output Ray forwards to this driver here (call after `ray.init`)."""
        if not self.verbose:
            _CAPTURE.capture_workers()

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
        self.local_path.parent.mkdir(parents=True, exist_ok=True)
        # Remote: this session's lines only; the stored log is prepended when it is uploaded.
        mode = "a" if experiment.is_local else "w"
        _CAPTURE.attach(self.local_path.open(mode, encoding="utf-8"),
                        f"=== {self.title}, {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n")
        self.location = experiment.uri_of(*RAY_LOG_FILE)

    # --- the end --------------------------------------------------------------------------

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.verbose:
            return
        if self.location is None and error is not None and not isinstance(error, UserError):
            # Failed before the log had a place: what Ray said may be why.
            for line in _CAPTURE.take_pending():
                print(line, file=sys.stderr)
        self._upload()
        if self.location is not None and error is not None:
            print(f"Ray's log: {self.location}", file=sys.stderr, flush=True)
        _CAPTURE.end_sweep()

    def _upload(self) -> None:
        experiment, local = self._experiment, self.local_path
        if experiment is None or local is None or experiment.is_local:
            return
        try:
            with _CAPTURE.lock:  # every line is flushed as it is written
                text = local.read_text(encoding="utf-8")
            if experiment.exists(*RAY_LOG_FILE):  # a resumed sweep: keep the earlier sessions
                text = experiment.read_text(*RAY_LOG_FILE) + text
            experiment.write_text(text, *RAY_LOG_FILE)
        except OSError as err:
            print(f"could not upload Ray's log to {self.location} ({err}); it is at {local}",
                  file=sys.stderr, flush=True)
            self.location = str(local)
