"""A real tiny sweep on local Ray with the logging callbacks, then its report, end to end.

Ray's own default loggers are switched off, so every file checked here was written by
`build_logging_callbacks`: through `launch()` once it is wired in, before that appended to the
RunConfig's callbacks here, as `build_callbacks` will do.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import click
import pytest
from browser import assert_report_renders, needs_chromium
from click.testing import CliRunner
from event_files import read_scalars
from hooks import INTEGRATED, needs_integration
from sweep_helpers import lm_config

from orchestrator import launch
from orchestrator.cli.report import register
from orchestrator.config.sections import LoggingConfig
from orchestrator.experiment.fit import flag_trials
from orchestrator.experiment.layout import FORGETTING_FILE, LEAKAGE_FILE
from orchestrator.post.report import compute_summary, load_histories
from orchestrator.run.leakage import check_data_leakage
from orchestrator.run.logging_callbacks import build_logging_callbacks

pytestmark = pytest.mark.integration
MAX_STEPS = 20
NUM_TRIALS = 4


@pytest.fixture(scope="module")
def sweep(local_ray, tiny_lm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    from ray import tune

    # `orchestrator.run.launch` the attribute is the function; the module is in sys.modules.
    launch_module = importlib.import_module("orchestrator.run.launch")
    storage = tmp_path_factory.mktemp("results")
    config = lm_config(
        tiny_lm_dir, name="report-sweep", storage_path=str(storage),
        train={"batch_size": 8, "max_steps": MAX_STEPS, "eval_every_steps": 5, "seed": 0},
        search_space={"train.learning_rate": {"type": "loguniform", "low": 1e-5, "high": 3e-2},
                      "lora.r": {"type": "choice", "values": [2, 4]}},
        search={"algorithm": "hyperopt", "seed": 1, "max_concurrent_trials": 2},
        scheduler={"type": "asha", "grace_period": 5, "reduction_factor": 2},
        num_samples=NUM_TRIALS, keep_checkpoints_per_trial=1, baseline=False,
    )
    real_tuner, real_build_plan, plans = tune.Tuner, launch_module.build_plan, []

    def tuner_with_logging(*args, run_config, **kwargs):  # what build_tuner will do
        extra = build_logging_callbacks(LoggingConfig(), experiment_name=run_config.name)
        run_config.callbacks = [*run_config.callbacks, *extra]
        return real_tuner(*args, run_config=run_config, **kwargs)

    def build_plan_kept(*args, **kwargs):
        plans.append(real_build_plan(*args, **kwargs))
        return plans[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        if not INTEGRATED:
            patch.setattr(tune, "Tuner", tuner_with_logging)
            patch.setattr(launch_module, "build_plan", build_plan_kept)
        result = launch(config, live=False)
    if not INTEGRATED:  # what launch() stores before the sweep starts, once wired in
        leakage = check_data_leakage(plans[0].data)
        Path(result.experiment_path, LEAKAGE_FILE).write_text(json.dumps(leakage.to_dict()))
    return result


def _reported(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]


def test_every_trial_writes_tensorboard_events_in_optimizer_steps(sweep) -> None:
    trial_dirs = [p.parent for p in Path(sweep.experiment_path).glob("*/result.json")]
    assert len(trial_dirs) == NUM_TRIALS
    for trial_dir in trial_dirs:
        reports = _reported(trial_dir)
        scalars = read_scalars(trial_dir)
        assert scalars, f"no TensorBoard events in {trial_dir}"
        steps, values = zip(*scalars["ray/tune/eval_loss"], strict=True)
        assert list(steps) == [r["step"] for r in reports]  # x axis: optimizer steps
        assert list(values) == pytest.approx([r["eval_loss"] for r in reports], rel=1e-6)
        assert {"ray/tune/train_loss", "ray/tune/tokens_seen"} <= scalars.keys()
        assert (trial_dir / "progress.csv").exists()  # our CSV logger, Ray's is off


@needs_integration
def test_launch_stores_leakage_and_results_carry_fit_flags(sweep) -> None:
    leakage = json.loads((Path(sweep.experiment_path) / LEAKAGE_FILE).read_text())
    assert [s["split"] for s in leakage["splits"]] == ["validation"]
    assert {"overfitting", "underfitting", "fit_note"} <= set(sweep.trials.columns)
    assert sweep.trials["overfitting"].dtype == bool


@needs_integration
def test_launch_refuses_leaky_data(local_ray, tiny_lm_dir: Path, tmp_path: Path) -> None:
    from orchestrator.run.leakage import LeakageError

    config = lm_config(tiny_lm_dir, name="leaky", storage_path=str(tmp_path),
                       quality={"refuse_on_leakage": True}, num_samples=1)
    # every validation text leaks: a copy of the train rows (the same file is refused earlier,
    # as a config error, before the leakage check)
    leaky = tmp_path / "validation.jsonl"
    leaky.write_text(Path(config["data"]["train"]).read_text())
    config["data"]["validation"] = str(leaky)
    with pytest.raises(LeakageError, match="The sweep was not started"):
        launch(config, live=False)
    assert not (tmp_path / "leaky").exists()  # nothing written: the same name can be rerun


def test_compute_and_flags_from_real_histories(sweep) -> None:
    histories = load_histories(sweep.experiment_path)
    assert set(histories) == set(sweep.trials["trial_id"])
    flags = flag_trials(histories)
    assert len(flags) == NUM_TRIALS and flags["fit_note"].map(type).eq(str).all()
    compute = compute_summary(sweep.trials)
    steps_run = sum(_reported(p.parent)[-1]["step"]
                    for p in Path(sweep.experiment_path).glob("*/result.json"))
    assert compute.steps_run == steps_run
    stopped = sweep.trials[sweep.trials["stopped_early"]]
    assert compute.stopped_early == len(stopped) >= 1
    assert compute.steps_saved == int((MAX_STEPS - stopped["last_step"]).sum()) > 0


def test_report_command_on_the_real_experiment(sweep, tmp_path: Path) -> None:
    group = click.Group("sweep")
    register(group)
    out = tmp_path / "report.html"
    cli = CliRunner().invoke(group, ["report", sweep.experiment_path, "--out", str(out),
                                     "--forgetting"])
    assert cli.exit_code == 0, cli.output
    assert cli.output.strip().endswith(f"Report: {out}")  # after transformers' load bars
    page = out.read_text(encoding="utf-8")
    assert "Sweep report: report-sweep" in page
    assert sweep.best_trial_id in page and "Hyperparameter importance (fANOVA)" in page
    assert "Data leakage (checked before the sweep)" in page
    forgetting = json.loads((Path(sweep.experiment_path) / FORGETTING_FILE).read_text())
    assert forgetting["delta"] == pytest.approx(forgetting["tuned_loss"]
                                                - forgetting["base_loss"])
    assert f"{forgetting['tuned_loss']:.4f}" in page
    default = CliRunner().invoke(group, ["report", sweep.experiment_path])
    assert default.exit_code == 0
    assert (Path(sweep.experiment_path) / "report.html").exists()


@needs_chromium
def test_real_report_renders_in_chromium(sweep, tmp_path: Path) -> None:
    from orchestrator.post.report import write_report

    report = write_report(sweep.experiment_path, tmp_path / "report.html")
    rendered = assert_report_renders(report, tmp_path / "browser", expected_images=4)
    assert "Learning curves" in rendered.dom
