"""Built-in Optuna pruners, chosen once per study.

Pruner settings are study-level (never searched per trial), so their fields declare bounds only.
A study reports each epoch's validation value with steps numbered across folds; a pruner whose
``reports`` is ``"fold"`` gets each fold's final value instead, with the fold as the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from criteria import (
    CriteriaError,
    FloatParam,
    IntParam,
    PluginConfig,
    PrunerPlugin,
    Requirements,
    hookimpl,
)
from pydantic import Field, model_validator

from criteria_builtins.optuna_support import experimental_ok

if TYPE_CHECKING:  # pragma: no cover
    from criteria import Registry

# Steps are epochs (numbered across folds): the warmup/interval knobs every step-based pruner shares.
_STARTUP = dict(ge=0, le=1000, description="Trials that finish before pruning starts.")
_WARMUP = dict(ge=0, le=1000, description="Epochs a trial runs before it can be pruned.")
_INTERVAL = dict(ge=1, le=1000, description="Check every this many epochs.")

# An int or "auto" (Optuna learns it from the first trial's steps).
_Resource = Annotated[int, Field(ge=1)] | Literal["auto"]


class _OptunaPruner(PrunerPlugin):
    """``optuna.pruners.<pruner_class>(**config)``: every Config field is named as Optuna names it."""

    pruner_class: ClassVar[str]

    def build(self, registry: Registry | None = None) -> Any:
        import optuna

        with experimental_ok():  # some pruners are still marked experimental, though long stable
            return getattr(optuna.pruners, self.pruner_class)(**self.config.model_dump())


class NoPruner(_OptunaPruner):
    name = "none"
    summary = "Never prune: every trial runs all its epochs."
    pruner_class = "NopPruner"
    multi_objective = True  # it needs no intermediate values, which multi-objective studies lack


class MedianConfig(PluginConfig):
    n_startup_trials: int = IntParam(5, **_STARTUP)
    n_warmup_steps: int = IntParam(1, **_WARMUP)
    interval_steps: int = IntParam(1, **_INTERVAL)


class Median(_OptunaPruner):
    name = "median"
    summary = "Prune a trial whose best value so far is worse than the median of earlier trials at that step."
    Config = MedianConfig
    priority = 10
    pruner_class = "MedianPruner"


class PercentileConfig(PluginConfig):
    percentile: float = FloatParam(
        25.0, ge=0.0, le=100.0, description="Keep trials in the top this-many percent at each step (50: median)."
    )
    n_startup_trials: int = IntParam(5, **_STARTUP)
    n_warmup_steps: int = IntParam(1, **_WARMUP)
    interval_steps: int = IntParam(1, **_INTERVAL)
    n_min_trials: int = IntParam(1, ge=1, le=1000, description="Trials that must have reached a step to compare.")


class Percentile(_OptunaPruner):
    name = "percentile"
    summary = "Prune a trial whose best value so far is outside the top percentile of earlier trials at that step."
    Config = PercentileConfig
    pruner_class = "PercentilePruner"


class HyperbandConfig(PluginConfig):
    min_resource: int = IntParam(1, ge=1, le=1000, description="Epochs every trial gets at least.")
    max_resource: _Resource = Field("auto", description="Epochs at most; 'auto' learns it from the first trial.")
    reduction_factor: int = IntParam(3, ge=2, le=10, description="Keep 1/reduction_factor of trials per rung.")

    @model_validator(mode="after")
    def _max_not_below_min(self) -> HyperbandConfig:
        if self.max_resource != "auto" and self.max_resource < self.min_resource:
            raise ValueError(f"max_resource ({self.max_resource}) must be >= min_resource ({self.min_resource})")
        return self


class Hyperband(_OptunaPruner):
    name = "hyperband"
    summary = "Hyperband: successive halving over several brackets of minimum resource."
    Config = HyperbandConfig
    pruner_class = "HyperbandPruner"


class SuccessiveHalvingConfig(PluginConfig):
    min_resource: _Resource = Field(
        1, description="Epochs before the first rung; 'auto' learns it from the first trial."
    )
    reduction_factor: int = IntParam(4, ge=2, le=10, description="Keep 1/reduction_factor of trials per rung.")
    min_early_stopping_rate: int = IntParam(0, ge=0, le=100, description="Skip this many rungs before pruning.")
    bootstrap_count: int = IntParam(0, ge=0, le=1000, description="Trials a rung needs before it prunes.")


class SuccessiveHalving(_OptunaPruner):
    name = "successive_halving"
    summary = "Asynchronous successive halving: at each rung keep only the best 1/reduction_factor of trials."
    Config = SuccessiveHalvingConfig
    pruner_class = "SuccessiveHalvingPruner"


class ThresholdConfig(PluginConfig):
    lower: float | None = Field(None, description="Prune below this value (e.g. 0.4 for macro F1).")
    upper: float | None = Field(None, description="Prune above this value (e.g. 2.0 for a loss).")
    n_warmup_steps: int = IntParam(0, **_WARMUP)
    interval_steps: int = IntParam(1, **_INTERVAL)

    @model_validator(mode="after")
    def _bounds_in_order(self) -> ThresholdConfig:
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower ({self.lower:g}) must not exceed upper ({self.upper:g})")
        return self


class Threshold(PrunerPlugin):
    name = "threshold"
    summary = "Prune a trial whose value leaves [lower, upper] or turns NaN (only NaN when no bound is set)."
    Config = ThresholdConfig

    def build(self, registry: Registry | None = None) -> Any:
        import optuna

        c = self.config
        # Optuna needs a bound; with none set, an infinite one leaves only the NaN check.
        lower = c.lower if c.lower is not None or c.upper is not None else float("-inf")
        return optuna.pruners.ThresholdPruner(
            lower=lower, upper=c.upper, n_warmup_steps=c.n_warmup_steps, interval_steps=c.interval_steps
        )


class PatientConfig(PluginConfig):
    wrapped: str = Field(
        "median", min_length=1,
        description="The pruner plugin (with its defaults) asked once a trial stops improving; "
        "'none': prune on patience alone.",
    )
    patience: int = IntParam(2, ge=0, le=1000, description="Epochs without improvement tolerated.")
    min_delta: float = FloatParam(0.0, ge=0.0, description="Smallest change that counts as an improvement.")

    @model_validator(mode="after")
    def _not_itself(self) -> PatientConfig:
        # Checked here so the spec reports it; the registry is consulted in build() (this Config
        # is validated while the registry loads, so it cannot look the name up there).
        if self.wrapped == Patient.name:
            raise ValueError("the patient pruner cannot wrap itself; name another pruner, e.g. 'median'")
        return self


class Patient(PrunerPlugin):
    name = "patient"
    summary = "Tolerate `patience` epochs without improvement, then let the wrapped pruner decide."
    Config = PatientConfig

    def build(self, registry: Registry) -> Any:
        import optuna

        c = self.config
        info = registry.get(self.kind, c.wrapped)  # unknown names raise with "did you mean"
        if issubclass(info.cls, Patient):
            raise CriteriaError("the patient pruner cannot wrap itself; name another pruner, e.g. 'median'")
        if info.cls.reports != "epoch":
            raise CriteriaError(
                f"the patient pruner cannot wrap {c.wrapped!r}: it compares trials per fold, while patience "
                "counts epochs; use it on its own (pruner use = "
                f"{c.wrapped!r}) or wrap an epoch-wise pruner such as 'median'"
            )
        availability = info.availability()
        if not availability:
            raise CriteriaError(
                f"pruner {c.wrapped!r} (wrapped by 'patient') is not available: {availability.reason}"
            )
        inner = info.cls().build(registry)
        # A pruner that never prunes would veto every stop; Optuna spells "patience alone" as None.
        if isinstance(inner, optuna.pruners.NopPruner):
            inner = None
        with experimental_ok():
            return optuna.pruners.PatientPruner(inner, patience=c.patience, min_delta=c.min_delta)


class WilcoxonConfig(PluginConfig):
    p_threshold: float = FloatParam(
        0.1, ge=0.0, le=1.0, description="Prune once the trial is worse than the best at this p-value."
    )
    n_startup_steps: int = IntParam(2, ge=0, le=1000, description="Folds a trial runs before it can be pruned.")


class Wilcoxon(_OptunaPruner):
    name = "wilcoxon"
    summary = "Wilcoxon signed-rank test of a trial's fold values against the best trial's (k-fold studies)."
    Config = WilcoxonConfig
    requires = Requirements.of({"scipy": "scipy"})
    reports = "fold"
    pruner_class = "WilcoxonPruner"


@hookimpl
def register_pruners(register):
    register(NoPruner, Median, Percentile, Hyperband, SuccessiveHalving, Threshold, Patient, Wilcoxon)
