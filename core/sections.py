"""The core-owned sections of a spec: study, data, model and train.

``TrainConfig`` holds knobs every trial shares whatever plugins it uses (batch size, dropout,
clipping, ...). Its fields declare search ranges exactly like plugin configs, so a spec can fix or
search them the same way (``batch_size = {choices = [16, 32]}``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_serializer, field_validator, model_validator

from criteria.ranges import BoolParam, ChoiceParam, FloatParam, IntParam

METRICS = (
    "macro_f1", "f1", "precision", "recall", "roc_auc", "pr_auc", "mcc", "balanced_accuracy",
    "accuracy", "loss",
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    timeout_minutes: float | None = Field(None, gt=0, description="Stop starting trials after this.")
    # Spelled `metric` and `direction` in the spec (one value or a list); the fields hold every objective.
    metrics: tuple[Literal[METRICS], ...] = Field(  # type: ignore[valid-type]
        ("macro_f1",), alias="metric",
        description="Validation metric the study optimises; a list of several makes a multi-objective study.",
    )
    directions: tuple[Literal["maximize", "minimize"], ...] = Field(
        ("maximize",), alias="direction",
        description="One direction for every metric, or a list with one per metric.",
    )
    epoch_reduction: Literal["best", "last"] = Field("best", description="Objective over epochs.")
    fold_reduction: Literal["mean", "median"] = Field("mean", description="Objective over folds.")
    storage: str | None = Field(None, description="Optuna storage URL (default: SQLite file here).")
    seed: int = Field(42, ge=0)
    enqueue: tuple[dict[str, Any], ...] = Field(
        (), description="Configurations the study tries first (Optuna's enqueue_trial), each a table of "
                        "parameters named as `criteria space` shows them; parameters left out are sampled.",
    )
    export: Literal["keep", "refit", "none"] = Field(
        "keep", description="Best model to export: the best trial's own (keep), the best "
                            "configuration retrained after the study (refit), or none.",
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

    @model_validator(mode="after")
    def _bounded(self) -> StudySection:
        if self.trials is None and self.timeout_minutes is None:
            raise ValueError("set trials or timeout_minutes (or both), or the study would never end")
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


class DataSection(Section):
    """Where the examples come from and how they are split. Paths are relative to the spec file."""

    format: Literal["redsm5", "pairs"] = "redsm5"
    path: Path | None = Field(None, description="Data folder or file (default: the embedded corpus).")
    criteria: Path | None = Field(None, description="Criteria JSON (default: the embedded criteria).")
    max_length: int = Field(256, ge=16, le=8192, description="Tokens per (post, criterion) pair.")
    split: Literal["holdout", "kfold"] = "holdout"
    folds: int = Field(5, ge=2, le=20, description="Number of folds when split = 'kfold'.")
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, ge=0, lt=1, description="Posts held out from the whole study.")
    evidence_negatives: int = Field(
        3, ge=0, le=64,
        description="Criteria each evidence sentence is paired with as not met, when training on evidence sentences.",
    )


class ModelSection(Section):
    """Which encoder to fine-tune."""

    name: str | None = Field(None, description="Hub name or local path (default: embedded MiniLM).")


class TrainConfig(Section):
    """Knobs shared by every trial. Not searched unless the spec gives a range."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    epochs: int = IntParam(3, ge=1, le=100, search=(2, 6), description="Maximum epochs per trial.")
    batch_size: int = ChoiceParam(16, search=(8, 16, 32), description="Examples per forward pass.")
    effective_batch_size: int | None = Field(
        None, ge=1, description="Target batch per optimizer step, reached by gradient accumulation."
    )
    eval_batch_size: int = Field(64, ge=1)
    hidden_dropout: float = FloatParam(0.1, ge=0.0, le=0.9, search=(0.0, 0.3))
    attention_dropout: float = FloatParam(0.1, ge=0.0, le=0.9, search=(0.0, 0.3))
    max_grad_norm: float = ChoiceParam(1.0, search=(0.0, 1.0, 2.0, 5.0), description="0 disables clipping.")
    evidence_sentences: bool = BoolParam(
        True, description="Also train on the training posts' evidence sentences (ReDSM5 annotations), each "
                          "paired with the criteria it shows (met) and data.evidence_negatives others (not met).",
    )
    token_dropout: float = FloatParam(
        0.0, ge=0.0, le=0.5, search=(0.0, 0.2),
        description="Share of post and criterion tokens replaced by the mask token while training.",
    )
    warmup_ratio: float = FloatParam(0.06, ge=0.0, le=0.5, search=(0.0, 0.2), description="Warmup as a share of all steps.")
    warmup_steps: int = ChoiceParam(
        0, search=(0, 500, 1000, 2000), ge=0,
        description="Warmup in optimizer steps; overrides warmup_ratio when above 0 (capped at the run's steps).",
    )
    freeze_layers: int = ChoiceParam(
        0, search=(0, 2, 6), ge=0, le=48,
        description="Freeze the embeddings and the bottom N of 12 layers, scaled to the model's depth (6 layers: N/2).",
    )
    freeze_encoder: bool = BoolParam(False, description="Freeze the whole encoder: train the head only.")
    unfreeze_layernorm: bool = BoolParam(
        False, description="Train LayerNorms even where the PEFT method or freezing froze them.",
    )
    unfreeze_pooler: bool = BoolParam(False, description="Train the encoder's pooler (heads that read it).")
    head_lr_multiplier: float = FloatParam(1.0, ge=0.1, le=100.0, search=(1.0, 20.0), log=True)
    layerwise_lr_decay: float = FloatParam(1.0, ge=0.5, le=1.0, search=(0.75, 0.95), description="1 is off.")
    tune_threshold: bool = Field(False, description="Tune the decision threshold on the validation split.")
    patience: int = Field(2, ge=0, description="Epochs without improvement before stopping (0: never).")
    min_delta: float = Field(0.0, ge=0.0)
