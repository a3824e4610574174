"""Built-in Optuna samplers, chosen once per study."""

from __future__ import annotations

from typing import Any

from criteria import BoolParam, IntParam, PluginConfig, SamplerPlugin, hookimpl


class TPEConfig(PluginConfig):
    # multivariate + group model the conditional space (per-plugin parameters) jointly.
    multivariate: bool = BoolParam(True, searchable=False)
    group: bool = BoolParam(True, searchable=False)
    n_startup_trials: int = IntParam(8, ge=0, le=1000, description="Random trials before TPE takes over.")
    constant_liar: bool = BoolParam(False, searchable=False, description="Helps when workers run in parallel.")


class TPE(SamplerPlugin):
    name = "tpe"
    summary = "Tree-structured Parzen estimator; multivariate and grouped for conditional spaces."
    Config = TPEConfig
    priority = 10

    def build(self, seed: int | None = None) -> Any:
        import warnings

        import optuna

        c = self.config
        with warnings.catch_warnings():  # multivariate/group are "experimental" but long stable
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                multivariate=c.multivariate, group=c.group, n_startup_trials=c.n_startup_trials,
                constant_liar=c.constant_liar, seed=seed,
            )


class Random(SamplerPlugin):
    name = "random"
    summary = "Uniform random sampling: a baseline, and robust in any space."

    def build(self, seed: int | None = None) -> Any:
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)


@hookimpl
def register_samplers(register):
    register(TPE, Random)
