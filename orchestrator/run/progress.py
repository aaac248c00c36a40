"""Live progress view: a table of trials that refreshes as results arrive.

On a terminal it redraws in place (rich); in logs and CI it prints one line per report, and
one when a trial ends (what a Ray Jobs log or a pipe shows).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

from trainables.config import is_better


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


class ProgressView(Callback):
    def __init__(self, metric: str, mode: str, total_trials: int,
                 live: bool | None = None) -> None:
        self.metric, self.mode, self.total = metric, mode, total_trials
        self.rows: dict[str, dict[str, Any]] = {}
        self.live_enabled = sys.stdout.isatty() if live is None else live
        self.live: Live | None = None
        self.started = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks with the run config; a live display holds locks and a terminal.
        return {**self.__dict__, "live": None}

    def _row(self, trial: Any) -> dict[str, Any]:
        row = self.rows.setdefault(trial.trial_id, {"status": "PENDING", "best": None})
        row["config"] = ", ".join(
            f"{k}={_fmt(v)}" for values in trial.config.values() if isinstance(values, dict)
            for k, v in values.items()
        )
        return row

    def _done(self) -> int:
        return sum(r["status"] in ("TERMINATED", "ERROR") for r in self.rows.values())

    def _table(self) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(title=f"sweep: {self._done()}/{self.total} trials done, "
                      f"{elapsed:.0f}s elapsed, {self.metric} ({self.mode})")
        for col in ("trial", "status", "step", self.metric, "best", "config"):
            table.add_column(col)
        for trial_id, r in sorted(self.rows.items()):
            table.add_row(trial_id, r["status"], _fmt(r.get("step")), _fmt(r.get("value")),
                          _fmt(r.get("best")), r.get("config", ""))
        return table

    def _refresh(self) -> None:
        if self.live is None and self.live_enabled:
            self.live = Live(self._table(), console=Console(), refresh_per_second=2)
            self.live.start()
        if self.live is not None:
            self.live.update(self._table())

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._row(trial)["status"] = "RUNNING"
        self._refresh()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        row = self._row(trial)
        value = result.get(self.metric)
        row.update(status="RUNNING", step=result.get("step"), value=value)
        if isinstance(value, float) and value == value:
            better = row["best"] is None or is_better(value, row["best"], self.mode)
            row["best"] = value if better else row["best"]
        if not self.live_enabled:
            print(f"[{time.monotonic() - self.started:6.0f}s] {trial.trial_id} step "
                  f"{_fmt(result.get('step'))}/{_fmt(result.get('total_steps'))} "
                  f"{self.metric}={_fmt(value)} train_loss={_fmt(result.get('train_loss'))} "
                  f"tokens/s={_fmt(result.get('tokens_per_s'))}", flush=True)
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, "TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, "ERROR")

    def _ended(self, trial: Any, status: str) -> None:
        row = self._row(trial)
        row["status"] = status
        if not self.live_enabled:  # a log (Ray Jobs, a pipe) hears when each trial ends
            best = ("no result" if row["best"] is None
                    else f"best {self.metric}={_fmt(row['best'])}")
            print(f"[{time.monotonic() - self.started:6.0f}s] {trial.trial_id} {status} {best} "
                  f"({self._done()}/{self.total} trials done)", flush=True)
        self._refresh()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.stop()
            self.live = None
