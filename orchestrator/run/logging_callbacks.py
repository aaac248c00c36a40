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

The `logging:` section itself is declared in `orchestrator.config.sections`. Ray is imported only
when the callbacks are built (the two TensorBoard classes below are made on first use).
"""

from __future__ import annotations

import functools
import importlib.util
from typing import TYPE_CHECKING, Any

from orchestrator.config.errors import MissingDependencyError
from orchestrator.config.sections import MLFLOW_INSTALL_HINT, LoggingConfig

if TYPE_CHECKING:
    from ray.tune import Callback


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
            raise MissingDependencyError(
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
