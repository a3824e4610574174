"""The core-owned sections of a spec: ``[study]``, ``[data]``, ``[model]``, ``[train]`` and
``[pretrain]``.

``[train]`` is the engine's :class:`~criteria.engine.config.TrainConfig` (the knobs every trial
shares) and ``[pretrain]`` its :class:`~criteria.engine.config.PretrainConfig` (continued
pretraining, only when the section is there); their fields declare search ranges exactly like
plugin configs, so a spec fixes or searches them the same way (``batch_size = {choices = [16, 32]}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from criteria.engine.config import PretrainConfig, TrainConfig
from criteria.engine.metric_names import OBJECTIVE_METRICS
from criteria.plugin.base import StrictModel

__all__ = ["CORE_SECTIONS", "SEARCHABLE_SECTIONS", "DataSection", "ModelSection", "PretrainConfig", "Section",
           "StudySection", "TrainConfig"]


class Section(StrictModel):
    """A core section: unknown keys are errors, and a bool is no number."""


class StudySection(Section):
    """How the Optuna study runs.

    ``metric`` and ``direction`` take one value or a list: several metrics make a multi-objective
    study (``metrics`` and ``directions`` hold them all, in order). ``metric`` and ``direction``
    as attributes are the first objective's: the engine trains, stops early and tunes the
    threshold for it, and the exported model is the Pareto front's best trial on it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)

    name: str = Field("criteria-study", min_length=1, description="Study name in Optuna and MLflow.")
    trials: int | None = Field(20, ge=1, description="Number of trials to run (None: until timeout).")
    timeout_minutes: float | None = Field(
        None, gt=0, description="The study's time limit: no trial starts later, and a running trial stops at its next "
                                "report (as pruned) once some trial is complete.")
    # Spelled `metric` and `direction` in the spec (one value or a list); the fields hold every objective.
    metrics: tuple[Literal[OBJECTIVE_METRICS], ...] = Field(  # type: ignore[valid-type]
        ("macro_f1",), alias="metric",
        description="Validation metric the study optimises; a list of several makes a multi-objective study.",
    )
    directions: tuple[Literal["maximize", "minimize"], ...] = Field(
        ("maximize",), alias="direction",
        description="One direction for every metric, or a list with one per metric.",
    )
    epoch_reduction: Literal["best", "last"] = Field("best", description="Objective over epochs.")
    reports_per_epoch: int = Field(
        1, ge=1, le=100,
        description="Validation reports to the pruner per epoch: above 1, a bad trial can be cut inside its first "
                    "epoch (each report scores the validation split once more).",
    )
    fold_reduction: Literal["mean", "median"] = Field("mean", description="Objective over folds.")
    storage: str | None = Field(
        None, description="Optuna storage URL, or env:NAME to read it from that environment variable "
                          "(default: a SQLite file here, for one worker; PostgreSQL for several).",
    )
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (a tracking server: http://host:5000), or env:NAME "
                          "(default: MLFLOW_TRACKING_URI, else ./mlflow.db).",
    )
    heartbeat_seconds: int = Field(
        30, ge=1, le=3600, description="How often the worker running a trial records that it is alive.",
    )
    grace_seconds: int = Field(
        120, ge=2, le=86400,
        description="A running trial without a heartbeat for this long is failed (its worker is lost) and "
                    "retried; also how long a worker waits for a database that went away.",
    )
    max_retries: int = Field(2, ge=0, le=100, description="How often a trial lost with its worker is run again.")
    storage_pool_size: int = Field(
        2, ge=1, le=100, description="Database connections each worker keeps open (its trials and its heartbeat).",
    )
    storage_pre_ping: bool = Field(
        True, description="Test a pooled connection before use, so a worker reconnects after the database restarts.",
    )
    storage_connect_timeout_seconds: int = Field(
        10, ge=1, le=600, description="How long to wait for the database to accept a connection.",
    )
    seed: int = Field(42, ge=0)
    enqueue: tuple[dict[str, Any], ...] = Field(
        (), description="Configurations the study tries first (Optuna's enqueue_trial), each a table of "
                        "parameters named as `criteria space` shows them; parameters left out are sampled.",
    )
    export: Literal["keep", "refit", "none"] = Field(
        "keep", description="Best model to export: the best trial's own (keep), the best "
                            "configuration retrained after the study (refit), or none.",
    )
    keep_models: int = Field(
        1, ge=0, le=1000, description="Trials that keep their model files: the best K (their reports are kept "
                                      "either way). Used by export = \"keep\"; 0 keeps none.",
    )
    ensemble: int = Field(
        1, ge=1, le=50, description="Combine the best K trials' models after the study (averaged probabilities, "
                                    "threshold re-tuned on validation) into one more exported model; 1: no ensemble. "
                                    "Keeps at least K models.",
    )
    register_model: str | None = Field(
        None, min_length=1, description="Register the exported model in the MLflow model registry under this "
                                        "name (a new version each export); it is logged as an MLflow model either way.",
    )

    @field_validator("metrics", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("metrics")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one metric")
        twice = sorted({m for m in value if value.count(m) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once; name each metric once")
        return value

    @model_validator(mode="before")
    @classmethod
    def _maximize_by_default(cls, data: Any) -> Any:
        # as a value, not a field default, so that it applies to every metric below
        if isinstance(data, dict) and "direction" not in data:
            return {**data, "direction": "maximize"}
        return data

    @field_validator("directions", mode="before")
    @classmethod
    def _one_for_all(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str):
            return (value,) * len(info.data.get("metrics") or (value,))
        return value

    @field_validator("directions")
    @classmethod
    def _one_per_metric(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        metrics = info.data.get("metrics")
        if metrics is not None and len(value) != len(metrics):
            raise ValueError(
                f"{len(value)} direction(s) for {len(metrics)} metric(s) ({', '.join(metrics)}); give one "
                "direction for all of them, or a list with one per metric in the order of study.metric"
            )
        return value

    @field_serializer("metrics", "directions")
    def _as_written(self, value: tuple[str, ...]) -> str | list[str]:
        return value[0] if len(value) == 1 else list(value)  # a single objective reads as it always did

    @field_validator("storage", "tracking_uri")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("env:") and not value[len("env:"):].strip():
            raise ValueError('name the environment variable that holds the URL: "env:CRITERIA_STORAGE"')
        return value

    @model_validator(mode="after")
    def _bounded(self) -> StudySection:
        if self.trials is None and self.timeout_minutes is None:
            raise ValueError("set trials or timeout_minutes (or both), or the study would never end")
        if self.export == "keep" and self.keep_models == 0:
            raise ValueError('export = "keep" exports the best trial\'s own model, so keep_models must be at least 1; '
                             'set keep_models = 1, or export = "refit" to retrain the best configuration instead')
        if self.ensemble > 1 and self.export == "none":
            raise ValueError(f'ensemble = {self.ensemble} combines models the study exports, but export = "none"; '
                             'set export = "keep" (or "refit"), or ensemble = 1')
        if self.ensemble > 1 and self.trials is not None and self.ensemble > self.trials:
            raise ValueError(f"ensemble = {self.ensemble} needs as many complete trials, but trials = {self.trials}; "
                             "lower ensemble or raise trials")
        if self.grace_seconds <= self.heartbeat_seconds:
            raise ValueError(
                f"grace_seconds ({self.grace_seconds}) must exceed heartbeat_seconds ({self.heartbeat_seconds}), "
                "or a live worker's trial would be failed between two heartbeats; twice or more is safe"
            )
        return self

    @property
    def metric(self) -> str:
        """The first (for a single-objective study the only) metric."""
        return self.metrics[0]

    @property
    def direction(self) -> str:
        return self.directions[0]

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def models_kept(self) -> int:
        """How many trials keep their model: those the export and the ensemble may need."""
        if self.export == "none":
            return 0
        return max(self.keep_models if self.export == "keep" else 0, self.ensemble if self.ensemble > 1 else 0)


class DataSection(Section):
    """Where the examples come from and how they are split. Paths are relative to the spec file."""

    format: Literal["auto", "redsm5", "pairs", "post_labels"] = Field(
        "auto", description="auto: a folder is ReDSM5, a file's format is read from its header "
                            "(pairs: post_id,text,criterion_id,status; post_labels: text,labels; redsm5: post_id,text).",
    )
    path: Path | None = Field(None, description="Data folder or file (default: the embedded corpus).")
    posts: Path | None = Field(None, description="A ReDSM5 posts file named explicitly (e.g. redsm5_posts.csv).")
    annotations: Path | None = Field(
        None, description="A ReDSM5 annotations file named explicitly (default: the one beside the posts).",
    )
    criteria: Path | None = Field(None, description="Criteria JSON (default: the embedded criteria).")
    ignore_labels: tuple[str, ...] = Field(
        ("SPECIAL_CASE", "NO_SYMPTOMS"),
        description="Symptom labels that are no criterion: their rows are skipped and counted in one line; "
                    "any other unknown label is an error.",
    )
    max_length: int = Field(256, ge=16, le=8192, description="Tokens per (post, criterion) pair.")
    split: Literal["holdout", "kfold"] = "holdout"
    folds: int = Field(5, ge=2, le=20, description="Number of folds when split = 'kfold'.")
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1, description="Posts held out from the whole study.")
    evidence_negatives: int = Field(
        3, ge=0, le=64,
        description="Criteria each evidence sentence is paired with as not met, when training on evidence sentences.",
    )


    @model_validator(mode="after")
    def _one_way_to_name_the_posts(self) -> DataSection:
        if self.posts is not None and self.path is not None:
            raise ValueError("give data.path (a folder or file) or data.posts (with data.annotations), not both")
        if self.posts is not None and self.format not in ("auto", "redsm5"):
            raise ValueError(f'data.posts names ReDSM5 files; data.format = "{self.format}" reads data.path')
        if self.annotations is not None and self.posts is None and self.path is None:
            raise ValueError("data.annotations needs the posts it annotates: set data.posts or data.path")
        return self


class ModelSection(Section):
    """Which encoder to fine-tune."""

    name: str | None = Field(None, description="Hub name or local path (default: embedded MiniLM).")


#: Every core section of a spec, by its TOML name (plugin kinds add one section each).
CORE_SECTIONS: dict[str, type[BaseModel]] = {
    "study": StudySection,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainConfig,
    "pretrain": PretrainConfig,
}
#: The core sections whose fields a spec may search, like a plugin's.
SEARCHABLE_SECTIONS = ("train", "pretrain")
