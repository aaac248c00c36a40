"""`sweep run` shows our lines, the progress view and the summary; Ray's own output goes to
EXPERIMENT/logs/ray.log, and `--verbose` puts it back on the console.

Only lines Ray writes synchronously are asserted on (ray.init's, Tune's final "Wrote the
latest version ..."): trials' output reaches the driver through Ray's log monitor, at a time
no test can pin down. Where those lines go is tested in tests/run/test_ray_log.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_helpers import lm_config

# What Ray and its trials print on their own, and must not reach the console by default.
RAY_NOISE = ["Loading weights", "Checkpoint successfully created", "Search algorithm",
             "Number of trials", "Token authentication", "/tmp/ray/session",
             "Started a local Ray instance", "Wrote the latest version", "pid="]


def _run(tmp_path: Path, *args: str, **config: object) -> tuple[subprocess.CompletedProcess, Path]:
    cfg = lm_config(Path(str(config.pop("model"))), storage_path=str(tmp_path / "out"), **config)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path),
                           "--address", "local", *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, tmp_path / "out" / str(cfg["name"])


@pytest.mark.integration
def test_console_shows_only_our_lines_and_ray_goes_to_the_log(
        tiny_lm_dir: Path, tmp_path: Path) -> None:
    proc, experiment = _run(tmp_path, model=tiny_lm_dir, name="quiet", num_samples=2)
    console = proc.stdout + proc.stderr
    assert [noise for noise in RAY_NOISE if noise in console] == []
    log = experiment / "logs" / "ray.log"
    assert f"Ray's output: {log} (--verbose prints it here)" in proc.stdout
    assert f"TensorBoard: tensorboard --logdir {experiment}" in proc.stdout
    assert re.search(r"\] \w+ step \d+/20 eval_loss=\S+ train_loss=", proc.stdout)  # progress
    summary = proc.stdout[proc.stdout.index("Trials:"):]
    assert "Best checkpoint:" in summary and f"Ray's log:       {log}" in summary
    text = log.read_text()
    assert text.startswith("=== sweep run quiet, ")
    assert "Started a local Ray instance" in text and "Wrote the latest version" in text


@pytest.mark.integration
def test_verbose_puts_rays_output_back_on_the_console(tiny_lm_dir: Path, tmp_path: Path) -> None:
    proc, experiment = _run(tmp_path, "--verbose", model=tiny_lm_dir, name="loud",
                            num_samples=1, baseline=False)
    assert "Started a local Ray instance" in proc.stderr
    assert "Wrote the latest version" in proc.stderr
    assert "Ray's log" not in proc.stdout and not (experiment / "logs").exists()
    assert "Best checkpoint:" in proc.stdout
