"""The driver of a sweep submitted as a Ray Job (`cluster.jobs.submit` runs it):

    python -m orchestrator.job_entry CONFIG [--set KEY=VALUE ...]

Ray sets RAY_ADDRESS for the job, so `launch()` runs on the cluster. Stopping must leave a
resumable experiment, and Tune writes its final snapshot only when SIGINT (or SIGUSR1) reaches
its run loop. So: SIGINT is given back its default handler (the job supervisor starts drivers
with it ignored), and SIGTERM, Ray's default stop signal, is routed to the same handler.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType


def allow_sigint() -> None:
    """Undo what the job supervisor does to its children: SIGINT ignored (and maybe blocked)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def route_sigterm_to_sigint() -> None:
    """On SIGTERM, do what SIGINT would do now: Tune's handler while the sweep runs (stop trials,
    save the experiment), KeyboardInterrupt before. Install it after `ray.init()`, which sets a
    SIGTERM handler of its own that just exits."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.job_entry",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="YAML path, relative to the job's working directory")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if not Path(args.config).exists():
        print(f"error: {args.config} is not in the uploaded project; is it excluded by "
              ".gitignore or orchestrator.jobs.PACKAGE_EXCLUDES? Move it or submit a copy "
              "from outside the project", file=sys.stderr)
        return 2
    from orchestrator.config.errors import UserError
    from orchestrator.run.launch import ensure_ray, launch

    allow_sigint()
    ensure_ray()
    route_sigterm_to_sigint()
    try:
        launch(args.config, args.overrides, live=False)
    except KeyboardInterrupt:
        print("Stopped before Tune could save a snapshot (a stop before the sweep started, or "
              "a second stop while it saved).", flush=True)
        return 130
    except UserError as err:  # config, leakage, an existing experiment, a stalled sweep
        print(f"error: {err}", file=sys.stderr)
        return 2
    # A stopped sweep returns here too: Tune has printed where it saved the state to resume from.
    return 0


if __name__ == "__main__":
    sys.exit(main())
