"""The HTML report from a made-up sweep (no Ray): sections, numbers, edge cases, the browser."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from browser import assert_report_renders, needs_chromium
from click.testing import CliRunner
from synthetic_sweep import TRIALS, histories, sweep_result

from orchestrator.cli.report import register
from orchestrator.post.report import build_report, compute_summary, searched_params
from orchestrator.post.report_plots import param_importances

LEAKAGE = {"train_size": 10, "threshold": 0.9, "ngram": 5, "seconds": 0.01, "leaked": 2,
           "splits": [{"split": "validation", "size": 4, "exact": 1, "normalized": 0, "near": 1,
                       "leaked": 2, "examples": [{"kind": "near", "similarity": 0.93,
                                                  "held_out_text": "a <b> c",
                                                  "train_text": "a <b> d"}]}]}
FORGETTING = {"base_loss": 3.1, "tuned_loss": 3.3, "delta": 0.2, "relative_delta": 0.0645}


def _images(page: str) -> list[str]:
    return re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)


def test_full_report_has_every_section(tmp_path: Path) -> None:
    result = sweep_result(tmp_path / "model")
    page = build_report(result, histories(), leakage=LEAKAGE, forgetting=FORGETTING)
    assert _images(page) == ["learning curves", "optimizer steps per trial",
                             "parallel coordinates", "hyperparameter importance"]
    for heading in ("Learning curves", "Compute: spent and saved by early stopping",
                    "Hyperparameters vs eval_loss", "Hyperparameter importance (fANOVA)",
                    "Best trials (top 6 of 6)", "Quality checks",
                    "Data leakage (checked before the sweep)",
                    "Forgetting (general English text)"):
        assert f"{heading}</h" in page, heading
    assert "6 (3 stopped early by the scheduler)" in page
    assert "t_00001: eval_loss=0.9094 (step 30)" in page
    assert "50 (28% of what running every trial to its budget would have cost)" in page
    # Fit flags: the made-up overfitting and underfitting trials, with why.
    assert re.search(r"<td>t_00000</td>\s*<td>True</td>\s*<td>False</td>", page)
    assert re.search(r"<td>t_00005</td>\s*<td>False</td>\s*<td>True</td>", page)
    assert "+0.2000 (+6.5%): worse on general text: some forgetting" in page
    assert "2 of 4 validation texts also occur in train." in page
    assert "a &lt;b&gt; c" in page and "<b>" not in page  # user text is escaped


def test_compute_summary_counts_steps() -> None:
    result = sweep_result(Path("/nonexistent/model"))
    compute = compute_summary(result.trials)
    run = sum(last for _, _, last, _ in TRIALS.values())
    assert (compute.steps_run, compute.steps_saved, compute.stopped_early) == (run, 50, 3)
    assert compute.fraction_saved == pytest.approx(50 / (run + 50))


def test_importance_from_fanova() -> None:
    result = sweep_result(Path("/nonexistent/model"))
    params, log_params = searched_params(result)
    assert params == ["train.learning_rate", "lora.r"] and log_params == {"train.learning_rate"}
    importance = param_importances(result.trials, params, "best_eval_loss", "min", log_params)
    assert importance.method == "fANOVA"
    assert set(importance.values) == set(params)
    assert sum(importance.values.values()) == pytest.approx(1.0)
    assert "from 6 trials only" in importance.note
    again = param_importances(result.trials, params, "best_eval_loss", "min", log_params)
    assert again.values == importance.values  # seeded: the same report every time


def test_one_trial_and_one_param_are_handled(tmp_path: Path) -> None:
    one = sweep_result(tmp_path / "model", trial_ids=["t_00001"])
    page = build_report(one, histories())
    assert "needs at least 2 trials with a best_eval_loss; this sweep has 1" in page
    assert _images(page) == ["learning curves", "optimizer steps per trial",
                             "parallel coordinates"]
    single = sweep_result(tmp_path / "model", search_space={
        "train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 3e-2}})
    page = build_report(single, histories())
    assert "only train.learning_rate varied, so it carries all the importance" in page
    assert "hyperparameter importance" in _images(page)


def test_nothing_searched(tmp_path: Path) -> None:
    result = sweep_result(tmp_path / "model", search_space={}, search={"algorithm": "random"})
    page = build_report(result, histories())
    assert "Nothing was searched" in page
    assert "no searched hyperparameter took more than one value" in page
    assert _images(page) == ["learning curves", "optimizer steps per trial"]


def test_cli_registers_report_command() -> None:
    group = click.Group("sweep")
    register(group)
    result = CliRunner().invoke(group, ["report", "--help"])
    assert result.exit_code == 0
    assert all(opt in result.output for opt in ("--out", "--top", "--forgetting",
                                                "--general-text"))
    missing = CliRunner().invoke(group, ["report", "/nonexistent/experiment"])
    assert missing.exit_code == 2 and "error:" in missing.output


@needs_chromium
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    page = build_report(sweep_result(tmp_path / "model"), histories(), leakage=LEAKAGE,
                        forgetting=FORGETTING)
    report.write_text(page, encoding="utf-8")
    rendered = assert_report_renders(report, tmp_path / "browser", expected_images=4)
    assert "Sweep report: synthetic" in rendered.dom
