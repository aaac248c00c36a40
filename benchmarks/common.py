"""What every benchmark shares: machine facts, the result file, tables, tiny models, a local Ray.

Each result file holds the ratios a benchmark measured plus how they were measured: the exact
command, the date, platform and CPU count, package versions, and the machine's load average
sampled during the run (other jobs share these machines, so load explains noisy figures).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
import threading
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"
PACKAGES = (
    "ray",
    "torch",
    "transformers",
    "peft",
    "optuna",
    "hyperopt",
    "datasets",
    "safetensors",
    "gguf",
    "numpy",
)


def dates_data(**extra: Any) -> dict[str, Any]:
    """The `data` section of the benchmarks' small causal-LM sweeps: the project's own dates
    example (examples/data/dates), prompts cut at 48 tokens; `extra` adds or overrides keys."""
    return {
        "train": str(ROOT / "examples/data/dates/train.jsonl"),
        "validation": str(ROOT / "examples/data/dates/validation.jsonl"),
        "prompt_template": "Write the date {date} in words:",
        "completion_template": " {words}",
        "max_length": 48,
        **extra,
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "sched_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


class LoadSampler:
    """Samples the 1-minute load average every `every_s` seconds in a daemon thread."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, float]:
        cpus = os.cpu_count() or 1
        # all three rounded alike: rounding keeps min <= mean <= max (a rounded mean next to
        # raw extremes did not: samples all 4.604 gave mean 4.6 < min 4.604)
        return {
            "loadavg_1m_min": round(min(self.samples), 2),
            "loadavg_1m_mean": round(statistics.fmean(self.samples), 2),
            "loadavg_1m_max": round(max(self.samples), 2),
            "cpu_count": cpus,
            "samples": len(self.samples),
        }


def command_line(argv: Sequence[str] | None, module: str) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", "-m", module, *args])


def default_out(name: str, quick: bool) -> Path:
    return RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")


def write_result(
    path: Path, *, name: str, command: str, quick: bool, load: LoadSampler, payload: dict[str, Any]
) -> Path:
    """Write `payload` (ratios, tables, targets) with the facts needed to judge it."""
    record = {
        "benchmark": name,
        "quick": quick,
        "command": command,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load": load.summary(),
        "packages": package_versions(),
        **payload,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=jsonable) + "\n")
    print(f"\nwrote {path}")
    return path


def jsonable(value: Any) -> Any:
    """`json.dumps` default: numpy and torch scalars as numbers, anything else as its str."""
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain-text table (floats to 4 significant digits); what every script prints."""
    if not rows:
        return "(no rows)"
    columns = list(columns or rows[0].keys())

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def verdict(value: float, target: float, *, lower_is_better: bool = True) -> dict[str, Any]:
    """`{"value", "target", "met", "margin"}`; margin > 0 means room left, < 0 a miss."""
    met = value <= target if lower_is_better else value >= target
    margin = (target - value) if lower_is_better else (value - target)
    return {"value": value, "target": target, "met": bool(met), "margin": margin}


def tiny_models() -> Any:
    """tests/tiny_models.py: 2-layer models built from a config (quick modes)."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import tiny_models

    return tiny_models


@contextlib.contextmanager
def local_ray() -> Iterator[float]:
    """Start a new local Ray for this run (never joins another) and shut it down afterwards.

    Yields the seconds `ray.init` took (0.0 when this process was already connected, e.g. a
    test's Ray fixture, which is then left running).
    """
    import time

    import ray

    from orchestrator.run.launch import ensure_ray

    if ray.is_initialized():
        yield 0.0
        return
    started = time.perf_counter()
    ensure_ray("local")
    try:
        yield time.perf_counter() - started
    finally:
        ray.shutdown()


@contextlib.contextmanager
def patched(owner: Any, attribute: str, value: Any) -> Iterator[None]:
    """Replace `owner.attribute` for the duration of the block."""
    original = getattr(owner, attribute)
    setattr(owner, attribute, value)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` intra-op threads (a 1-CPU trial gets 1), then restore."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def environ(name: str, value: str) -> Iterator[None]:
    """Set one environment variable for the block, then restore it."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def interleaved(variants: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """(repeat, variant) in counterbalanced order: A B, B A, A B, ... so a load that drifts
    during the run, or a first-run effect, does not favour one variant."""
    for i in range(repeats):
        for variant in variants if i % 2 == 0 else list(reversed(variants)):
            yield i, variant
