"""Logger callbacks: config rules, what is built, TensorBoard's x axis. No Ray cluster."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import pickle
import subprocess
import sys
import types
from pathlib import Path

import pytest
from event_files import read_scalars
from pydantic import ValidationError
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from sweep_helpers import ROOT

from orchestrator.config.errors import MissingDependencyError
from orchestrator.config.sections import LoggingConfig
from orchestrator.run.logging_callbacks import (
    NoTensorBoard,
    StepTBXLoggerCallback,
    build_logging_callbacks,
    check_logging,
)


class _Trial:
    """What TBXLoggerCallback reads from a Tune trial."""

    def __init__(self, folder: Path) -> None:
        self.local_path = str(folder)
        self.evaluated_params = {"train/learning_rate": 0.01}

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


def test_config_defaults_and_rules() -> None:
    config = LoggingConfig()
    assert config.tensorboard is True and config.mlflow is None
    with_mlflow = LoggingConfig.model_validate({"mlflow": {"tracking_uri": "http://h:5000"}})
    assert with_mlflow.mlflow is not None and with_mlflow.mlflow.experiment_name is None
    with pytest.raises(ValidationError, match="tensorbord"):
        LoggingConfig.model_validate({"tensorbord": True})
    with pytest.raises(ValidationError, match="MLFLOW_TRACKING_PASSWORD"):
        LoggingConfig.model_validate({"mlflow": {"tracking_uri": "https://u:secret@h"}})


def test_config_import_does_not_import_ray() -> None:
    code = ("import sys; import orchestrator.run.logging_callbacks, orchestrator.run.leakage, "
            "orchestrator.experiment.fit; "
            "print(sorted(m for m in ('ray', 'ray.tune') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


def test_callbacks_pickle_by_reference() -> None:
    callback = build_logging_callbacks(LoggingConfig())[-1]
    assert type(pickle.loads(pickle.dumps(callback))) is StepTBXLoggerCallback
    assert type(pickle.loads(pickle.dumps(NoTensorBoard()))) is NoTensorBoard


def test_default_callbacks() -> None:
    callbacks = build_logging_callbacks(LoggingConfig())
    assert [type(c) for c in callbacks] == [CSVLoggerCallback, JsonLoggerCallback,
                                            StepTBXLoggerCallback]


def test_tensorboard_off_keeps_ray_from_adding_its_own() -> None:
    from ray.tune.utils.callback import _create_default_callbacks

    callbacks = build_logging_callbacks(LoggingConfig(tensorboard=False))
    final = _create_default_callbacks(list(callbacks))
    tbx = [c for c in final if isinstance(c, TBXLoggerCallback)]
    assert len(tbx) == 1 and isinstance(tbx[0], NoTensorBoard)
    assert sum(isinstance(c, CSVLoggerCallback) for c in final) == 1  # no duplicate loggers
    tbx[0].log_trial_result(1, object(), {"eval_loss": 1.0})  # inert


def test_tensorboard_x_axis_is_the_optimizer_step(tmp_path: Path) -> None:
    callback = StepTBXLoggerCallback()
    trial = _Trial(tmp_path / "trial")
    for iteration, step in enumerate((5, 10, 20), start=1):
        callback.log_trial_result(iteration, trial, {
            "eval_loss": 3.0 - iteration, "step": step, "training_iteration": iteration,
        })
    callback.log_trial_end(trial)
    scalars = read_scalars(tmp_path / "trial")
    assert scalars["ray/tune/eval_loss"] == [(5, 2.0), (10, 1.0), (20, 0.0)]


def test_mlflow_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real_find_spec(name, *a))
    config = LoggingConfig.model_validate({"mlflow": {}})
    with pytest.raises(MissingDependencyError, match="pip install mlflow"):
        build_logging_callbacks(config)
    assert check_logging(config) == [
        "logging.mlflow: mlflow is not installed; `pip install mlflow`, or remove logging.mlflow"
    ]
    assert check_logging(LoggingConfig()) == []


def test_mlflow_callback_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    fake = types.ModuleType("mlflow")  # stands in for the real package, which is optional
    fake.__spec__ = importlib.machinery.ModuleSpec("mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    config = LoggingConfig.model_validate(
        {"mlflow": {"tracking_uri": "file:///tmp/mlruns", "save_artifact": True}})
    callbacks = build_logging_callbacks(config, experiment_name="quickstart-1")
    mlflow = callbacks[-1]
    assert isinstance(mlflow, MLflowLoggerCallback)
    assert mlflow.tracking_uri == "file:///tmp/mlruns"
    assert mlflow.experiment_name == "quickstart-1"  # the sweep's name by default
    assert mlflow.should_save_artifact is True and mlflow.tags == {"sweep": "quickstart-1"}
    named = LoggingConfig.model_validate({"mlflow": {"experiment_name": "team-sweeps"}})
    assert build_logging_callbacks(named, experiment_name="x")[-1].experiment_name == "team-sweeps"
