"""Built-in Optuna samplers, chosen once per study.

Sampler settings are study-level (never searched per trial), so their fields declare bounds only.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Sequence

from criteria import (
    BoolParam,
    Categorical,
    ChoiceParam,
    FloatParam,
    IntParam,
    PluginConfig,
    Requirements,
    SamplerPlugin,
    choice_label,
    hookimpl,
)
from pydantic import Field

from criteria_builtins.optuna_support import experimental_ok


class _OptunaSampler(SamplerPlugin):
    """``optuna.samplers.<sampler_class>(**config, seed=seed, **options)``: every Config field is
    named as Optuna names it. Options some of them mark "experimental", though long stable, are
    accepted without a warning."""

    sampler_class: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}

    def build(self, seed: int | None = None) -> Any:
        import optuna

        with experimental_ok():
            sampler = getattr(optuna.samplers, self.sampler_class)
            return sampler(**self.config.model_dump(), seed=seed, **self.options)


def _varies(search: Any) -> bool:
    """Whether a range offers more than one value (Optuna fixes single-valued ones by itself)."""
    return len({choice_label(v) for v in search.endpoints()}) > 1


class TPEConfig(PluginConfig):
    # multivariate + group model the conditional space (per-plugin parameters) jointly.
    multivariate: bool = BoolParam(True, searchable=False)
    group: bool = BoolParam(True, searchable=False)
    n_startup_trials: int = IntParam(8, ge=0, le=1000, description="Random trials before TPE takes over.")
    constant_liar: bool = BoolParam(False, searchable=False, description="Helps when workers run in parallel.")


class TPE(_OptunaSampler):
    name = "tpe"
    summary = "Tree-structured Parzen estimator; multivariate and grouped for conditional spaces."
    Config = TPEConfig
    priority = 10
    sampler_class = "TPESampler"
    multi_objective = True


class Random(_OptunaSampler):
    name = "random"
    summary = "Uniform random sampling: a baseline, and robust in any space."
    sampler_class = "RandomSampler"
    multi_objective = True


class GPConfig(PluginConfig):
    n_startup_trials: int = IntParam(10, ge=0, le=1000, description="Random trials before the GP takes over.")
    deterministic_objective: bool = BoolParam(
        False, searchable=False, description="Fit no observation noise (only if reruns give identical values)."
    )


class GP(_OptunaSampler):
    name = "gp"
    summary = "Gaussian-process Bayesian optimization; sample-efficient for small budgets of costly trials."
    Config = GPConfig
    requires = Requirements.of({"scipy": "scipy", "torch": "torch"})
    sampler_class = "GPSampler"
    multi_objective = True


class CmaEsConfig(PluginConfig):
    n_startup_trials: int = IntParam(1, ge=0, le=1000, description="Random trials before CMA-ES takes over.")
    popsize: int | None = Field(None, ge=2, le=10000, description="Population (none: 4 + 3 ln(dimensions)).")
    with_margin: bool = BoolParam(
        False, searchable=False, description="CMA-ES with margin: keeps integer and stepped parameters exploring."
    )


class CmaEs(_OptunaSampler):
    name = "cmaes"
    summary = "CMA-ES evolution strategy; numeric spaces only (fix categorical parameters, or use tpe)."
    Config = CmaEsConfig
    requires = Requirements.of({"cmaes": "cmaes"})
    sampler_class = "CmaEsSampler"
    multi_objective = False  # Optuna's CmaEsSampler refuses studies with several objectives

    def space_problems(self, dimensions: Sequence[tuple[str, Any]]) -> list[str]:
        # Optuna's CmaEsSampler would sample them at random, silently: say so before the study runs.
        categorical = [name for name, search in dimensions
                       if isinstance(search, Categorical) and _varies(search)]
        if not categorical:
            return []
        return [
            f"CMA-ES cannot sample categorical parameters, and this space searches {len(categorical)}: "
            f"{', '.join(categorical)}. Fix each to one value in the spec (a plugin choice by "
            '`use = "NAME"`, a parameter by `NAME = value`), or use a sampler that handles them: '
            '[sampler] use = "tpe"'
        ]


class QMCConfig(PluginConfig):
    qmc_type: Literal["sobol", "halton"] = ChoiceParam(
        "sobol", searchable=False, description="Low-discrepancy sequence."
    )
    # Scrambled sequences avoid the unscrambled ones' fixed corner points and make the seed count.
    scramble: bool = BoolParam(True, searchable=False, description="Randomize the sequence (uses the seed).")


class QMC(_OptunaSampler):
    name = "qmc"
    summary = "Quasi-Monte Carlo (Sobol or Halton): covers numeric spaces evenly; categoricals at random."
    Config = QMCConfig
    requires = Requirements.of({"scipy": "scipy"})
    sampler_class = "QMCSampler"
    multi_objective = True
    options = {"warn_independent_sampling": False}


class NSGA2Config(PluginConfig):
    population_size: int = IntParam(50, ge=2, le=10000, description="Trials per generation.")
    mutation_prob: float | None = Field(
        None, ge=0.0, le=1.0, description="Per-parameter mutation rate (none: 1/parameters)."
    )
    crossover_prob: float = FloatParam(0.9, ge=0.0, le=1.0, description="Chance a child is bred by crossover.")
    swapping_prob: float = FloatParam(
        0.5, ge=0.0, le=1.0, description="Chance each parameter comes from the other parent."
    )


class NSGA2(_OptunaSampler):
    name = "nsga2"
    summary = "NSGA-II genetic algorithm; meant for multi-objective studies, also runs single-objective ones."
    Config = NSGA2Config
    sampler_class = "NSGAIISampler"
    multi_objective = True


@hookimpl
def register_samplers(register):
    register(TPE, Random, GP, CmaEs, QMC, NSGA2)
