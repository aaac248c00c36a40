"""Sections of the sweep config that feature modules read: where trials log, and the quality
checks around a sweep. Declared here, with the rest of the schema; the modules that act on them
(`run.logging_callbacks`, `run.leakage`) import these, never the reverse.

    logging:
      tensorboard: true          # event files in every trial folder: tensorboard --logdir EXP
      mlflow:                    # optional; needs `pip install mlflow`
        tracking_uri: http://127.0.0.1:5000
        experiment_name: quickstart
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from trainables.config import StrictModel, is_stored

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


class QualityConfig(StrictModel):
    check_leakage: bool = Field(
        True, description="Before the sweep, count validation/test texts that also occur in "
        "train (exact, normalized, near-duplicate) and print a warning."
    )
    refuse_on_leakage: bool = Field(
        False, description="Refuse to start the sweep when any leakage is found."
    )
    near_duplicate_threshold: float = Field(
        0.9, gt=0.0, le=1.0, description="Character 5-gram Jaccard similarity from which two "
        "texts count as near-duplicates: lower catches more paraphrases, and more false alarms."
    )

    @model_validator(mode="after")
    def _refuse_needs_the_check(self, info: ValidationInfo) -> QualityConfig:
        if self.refuse_on_leakage and not self.check_leakage and not is_stored(self, info):
            raise ValueError(
                "quality.refuse_on_leakage: true, but quality.check_leakage is false, so there "
                "would be nothing to refuse on; set check_leakage: true, or drop refuse_on_leakage"
            )
        return self
