"""Where trials log besides the experiment folder: TensorBoard, and MLflow when configured.

The `logging:` section of a sweep config:

    logging:
      tensorboard: true          # event files in every trial folder: tensorboard --logdir EXP
      mlflow:                    # optional; needs `pip install mlflow`
        tracking_uri: http://127.0.0.1:5000
        experiment_name: quickstart

>>> callbacks = build_logging_callbacks(LoggingConfig())
>>> [type(c).__name__ for c in callbacks]
['CSVLoggerCallback', 'JsonLoggerCallback', 'StepTBXLoggerCallback']

The sweep config imports this module for `LoggingConfig`, so Ray is imported only when the
callbacks are built (the two TensorBoard classes below are made on first use).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from trainables.config import StrictModel

if TYPE_CHECKING:
    from ray.tune import Callback

MLFLOW_INSTALL_HINT = "pip install mlflow"


class MLflowConfig(StrictModel):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking server (http://HOST:5000) or folder (file:///path). "
        "Default: MLFLOW_TRACKING_URI, else ./mlruns where the sweep is launched."
    )
    experiment_name: str | None = Field(
        None, description="MLflow experiment the trials are logged to (one run per trial). "
        "Default: the sweep's name."
    )
    save_artifact: bool = Field(
        False, description="Also upload each trial folder, checkpoints included, as run "
        "artifacts: complete, but large."
    )

    @field_validator("tracking_uri")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).password:
            raise ValueError(
                "carries a password; remove it from the URI and set MLFLOW_TRACKING_USERNAME / "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) instead, so it is never "
                "written into experiment files"
            )
        return value


class LoggingConfig(StrictModel):
    tensorboard: bool = Field(
        True, description="TensorBoard event files in every trial folder, x axis in optimizer "
        "steps (`tensorboard --logdir EXPERIMENT`)."
    )
    mlflow: MLflowConfig | None = Field(
        None, description="Log every trial as an MLflow run (params, metrics per evaluation). "
        "Needs `pip install mlflow`."
    )


@functools.cache
def _tensorboard_classes() -> dict[str, type]:
    from ray.tune.logger import TBXLoggerCallback

    class StepTBXLoggerCallback(TBXLoggerCallback):
        """Ray's TensorBoard logger with the optimizer step as x axis instead of the report
        count, so trials with different eval intervals (or resumed ones) line up."""

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            if "step" in result and result.get("timesteps_total") is None:
                result = {**result, "timesteps_total": result["step"]}
            super().log_trial_result(iteration, trial, result)

    class NoTensorBoard(TBXLoggerCallback):
        """Inert stand-in. Ray adds a TensorBoard logger by itself whenever tensorboardX is
        installed and no TBXLoggerCallback is given; handing it this one is how
        `tensorboard: false` holds."""

        def __init__(self) -> None:  # no writers, no tensorboardX import
            pass

        def log_trial_start(self, trial: Any) -> None:
            pass

        def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
            pass

        def log_trial_end(self, trial: Any, failed: bool = False) -> None:
            pass

    classes: dict[str, type] = {"StepTBXLoggerCallback": StepTBXLoggerCallback,
                                "NoTensorBoard": NoTensorBoard}
    for name, cls in classes.items():  # pickled by reference, found through __getattr__
        cls.__module__, cls.__qualname__ = __name__, name
    return classes


def __getattr__(name: str) -> Any:
    """`StepTBXLoggerCallback` and `NoTensorBoard`, made (and Ray imported) on first use."""
    if name in ("StepTBXLoggerCallback", "NoTensorBoard"):
        return _tensorboard_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_logging(logging_config: LoggingConfig) -> list[str]:
    """Problems to report before the sweep starts (one line each, with the fix)."""
    problems = []
    if logging_config.mlflow is not None and importlib.util.find_spec("mlflow") is None:
        problems.append(f"logging.mlflow: mlflow is not installed; `{MLFLOW_INSTALL_HINT}`, or "
                        "remove logging.mlflow")
    if logging_config.tensorboard and importlib.util.find_spec("tensorboardX") is None:
        problems.append("logging.tensorboard: tensorboardX is not installed; `pip install "
                        "tensorboardX`, or set logging.tensorboard: false")
    return problems


def build_logging_callbacks(
    logging_config: LoggingConfig, *, experiment_name: str | None = None
) -> list[Callback]:
    """Tune logger callbacks for `RunConfig(callbacks=...)`.

    CSV and JSON loggers are always included: `load_results` reads the progress.csv /
    result.json they write, so they are not left to Ray's implicit defaults.
    `experiment_name` is the MLflow experiment when `logging.mlflow.experiment_name` is unset.
    """
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    tensorboard = _tensorboard_classes()
    callbacks: list[Callback] = [CSVLoggerCallback(), JsonLoggerCallback()]
    callbacks.append(tensorboard["StepTBXLoggerCallback" if logging_config.tensorboard
                                 else "NoTensorBoard"]())
    mlflow = logging_config.mlflow
    if mlflow is not None:
        if importlib.util.find_spec("mlflow") is None:
            raise ImportError(
                f"logging.mlflow is set but mlflow is not installed; `{MLFLOW_INSTALL_HINT}` "
                "(or remove logging.mlflow from the config)"
            )
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(
            tracking_uri=mlflow.tracking_uri,
            experiment_name=mlflow.experiment_name or experiment_name,
            save_artifact=mlflow.save_artifact,
            tags={"sweep": experiment_name} if experiment_name else None,
        ))
    return callbacks
