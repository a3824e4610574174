"""criteria: fine-tune transformer classifiers that decide whether a post meets a criterion,
and search their hyperparameters with Optuna, from plugins."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names load on first use (PEP 562): `criteria plugins list` answers from its cache
# without importing pydantic or pluggy, which these modules need.
_EXPORTS = {
    "Availability": "criteria.plugin",
    "Plugin": "criteria.plugin",
    "PluginConfig": "criteria.plugin",
    "Requirements": "criteria.plugin",
    "BackendPlugin": "criteria.kinds",
    "HeadPlugin": "criteria.kinds",
    "LossPlugin": "criteria.kinds",
    "OptimizerPlugin": "criteria.kinds",
    "PeftPlugin": "criteria.kinds",
    "PrunerPlugin": "criteria.kinds",
    "SamplerPlugin": "criteria.kinds",
    "SchedulerPlugin": "criteria.kinds",
    "TrainingPlan": "criteria.kinds",
    "BoolParam": "criteria.ranges",
    "ChoiceParam": "criteria.ranges",
    "FloatParam": "criteria.ranges",
    "IntParam": "criteria.ranges",
}

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

    from criteria.kinds import (BackendPlugin, HeadPlugin, LossPlugin, OptimizerPlugin, PeftPlugin,
                                PrunerPlugin, SamplerPlugin, SchedulerPlugin, TrainingPlan)
    from criteria.plugin import Availability, Plugin, PluginConfig, Requirements
    from criteria.ranges import BoolParam, ChoiceParam, FloatParam, IntParam

    hookimpl: pluggy.HookimplMarker


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        import pluggy

        value: Any = pluggy.HookimplMarker("criteria")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'criteria' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


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
