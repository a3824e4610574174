"""Built-in Optuna pruners, chosen once per study."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from criteria import IntParam, PluginConfig, PrunerPlugin, hookimpl
from pydantic import Field, model_validator


class NoPruner(PrunerPlugin):
    name = "none"
    summary = "Never prune: every trial runs all its epochs."

    def build(self) -> Any:
        import optuna

        return optuna.pruners.NopPruner()


class MedianConfig(PluginConfig):
    n_startup_trials: int = IntParam(5, ge=0, le=1000, description="Trials that finish before pruning starts.")
    n_warmup_steps: int = IntParam(1, ge=0, le=1000, description="Epochs a trial runs before it can be pruned.")
    interval_steps: int = IntParam(1, ge=1, le=1000)


class Median(PrunerPlugin):
    name = "median"
    summary = "Prune a trial whose best value so far is worse than the median of earlier trials at that step."
    Config = MedianConfig
    priority = 10

    def build(self) -> Any:
        import optuna

        c = self.config
        return optuna.pruners.MedianPruner(
            n_startup_trials=c.n_startup_trials, n_warmup_steps=c.n_warmup_steps, interval_steps=c.interval_steps
        )


class HyperbandConfig(PluginConfig):
    min_resource: int = IntParam(1, ge=1, le=1000, description="Epochs every trial gets at least.")
    max_resource: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="Epochs at most; 'auto' learns it from the first trial."
    )
    reduction_factor: int = IntParam(3, ge=2, le=10, description="Keep 1/reduction_factor of trials per rung.")

    @model_validator(mode="after")
    def _max_not_below_min(self) -> HyperbandConfig:
        if self.max_resource != "auto" and self.max_resource < self.min_resource:
            raise ValueError(f"max_resource ({self.max_resource}) must be >= min_resource ({self.min_resource})")
        return self


class Hyperband(PrunerPlugin):
    name = "hyperband"
    summary = "Hyperband: successive halving over several brackets of minimum resource."
    Config = HyperbandConfig

    def build(self) -> Any:
        import optuna

        c = self.config
        return optuna.pruners.HyperbandPruner(
            min_resource=c.min_resource, max_resource=c.max_resource, reduction_factor=c.reduction_factor
        )


@hookimpl
def register_pruners(register):
    register(NoPruner, Median, Hyperband)
