"""criteria: fine-tune transformer classifiers that decide whether a post meets a criterion,
and search their hyperparameters with Optuna, from plugins."""

from __future__ import annotations

import pluggy

from criteria.kinds import (
    BackendPlugin,
    HeadPlugin,
    LossPlugin,
    OptimizerPlugin,
    PeftPlugin,
    PrunerPlugin,
    SamplerPlugin,
    SchedulerPlugin,
    TrainingPlan,
)
from criteria.plugin import Availability, Plugin, PluginConfig, Requirements
from criteria.ranges import BoolParam, ChoiceParam, FloatParam, IntParam

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("criteria")

__all__ = [
    "Availability",
    "BackendPlugin",
    "BoolParam",
    "ChoiceParam",
    "FloatParam",
    "HeadPlugin",
    "IntParam",
    "LossPlugin",
    "OptimizerPlugin",
    "PeftPlugin",
    "Plugin",
    "PluginConfig",
    "PrunerPlugin",
    "Requirements",
    "SamplerPlugin",
    "SchedulerPlugin",
    "TrainingPlan",
    "__version__",
    "hookimpl",
]
