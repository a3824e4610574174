"""criteria: fine-tune transformer classifiers that decide whether a post meets a criterion,
and search their hyperparameters with Optuna, from plugins.

This module is the public API for plugin authors: everything a plugin of any kind needs is
importable from here (``from criteria import OptimizerPlugin, FloatParam, hookimpl``), and
:mod:`criteria.testing` checks and runs a plugin the way the project tests its own. Names elsewhere
in the package are internal and may change between releases.

``PLUGIN_API`` is the version of the plugin contract; within a version the contract only grows
(see :mod:`criteria.plugin.hookspecs`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names load on first use (PEP 562): `criteria plugins list` answers from its cache
# without importing pydantic or pluggy, which these modules need. Kept in agreement with
# ``__all__`` and the imports below by tests/test_public_api.py.
_EXPORTS = {
    "CriteriaError": "criteria.errors",
    "CriteriaWarning": "criteria.errors",
    "Bf16Support": "criteria.hardware",
    "CudaDevice": "criteria.hardware",
    "cpu_bf16_support": "criteria.hardware",
    "cuda_devices": "criteria.hardware",
    "usable_cores": "criteria.hardware",
    "Availability": "criteria.plugin.base",
    "Plugin": "criteria.plugin.base",
    "PluginConfig": "criteria.plugin.base",
    "Requirements": "criteria.plugin.base",
    "AugmenterPlugin": "criteria.plugin.kinds",
    "BackendPlugin": "criteria.plugin.kinds",
    "FormulationPlugin": "criteria.plugin.kinds",
    "HeadPlugin": "criteria.plugin.kinds",
    "LossPlugin": "criteria.plugin.kinds",
    "MaskingPlugin": "criteria.plugin.kinds",
    "OptimizerPlugin": "criteria.plugin.kinds",
    "PeftPlugin": "criteria.plugin.kinds",
    "PrunerPlugin": "criteria.plugin.kinds",
    "SamplerPlugin": "criteria.plugin.kinds",
    "SchedulerPlugin": "criteria.plugin.kinds",
    "TrainingPlan": "criteria.plugin.kinds",
    "BoolParam": "criteria.plugin.fields",
    "ChoiceParam": "criteria.plugin.fields",
    "FloatParam": "criteria.plugin.fields",
    "IntParam": "criteria.plugin.fields",
    "Categorical": "criteria.plugin.ranges",
    "FloatRange": "criteria.plugin.ranges",
    "IntRange": "criteria.plugin.ranges",
    "SearchRange": "criteria.plugin.ranges",
    "choice_label": "criteria.plugin.ranges",
    "Registry": "criteria.plugin.registry",
    "AugmentContext": "criteria.data.augment",
    "Post": "criteria.data.augment",
    "STOP_WORDS": "criteria.data.augment",
    "Word": "criteria.data.augment",
    "Units": "criteria.data.units",
    "pair_units": "criteria.data.units",
    "post_units": "criteria.data.units",
    "with_criteria": "criteria.data.units",
    "PLUGIN_API": "criteria.plugin.hookspecs",
    "Precision": "criteria.engine.runtime",
    "Runtime": "criteria.engine.runtime",
}

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

    from criteria.data.augment import STOP_WORDS, AugmentContext, Post, Word
    from criteria.data.units import Units, pair_units, post_units, with_criteria
    from criteria.engine.runtime import Precision, Runtime
    from criteria.errors import CriteriaError, CriteriaWarning
    from criteria.hardware import Bf16Support, CudaDevice, cpu_bf16_support, cuda_devices, usable_cores
    from criteria.plugin.base import Availability, Plugin, PluginConfig, Requirements
    from criteria.plugin.fields import BoolParam, ChoiceParam, FloatParam, IntParam
    from criteria.plugin.hookspecs import PLUGIN_API
    from criteria.plugin.kinds import (
        AugmenterPlugin,
        BackendPlugin,
        FormulationPlugin,
        HeadPlugin,
        LossPlugin,
        MaskingPlugin,
        OptimizerPlugin,
        PeftPlugin,
        PrunerPlugin,
        SamplerPlugin,
        SchedulerPlugin,
        TrainingPlan,
    )
    from criteria.plugin.ranges import Categorical, FloatRange, IntRange, SearchRange, choice_label
    from criteria.plugin.registry import Registry

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
    "AugmentContext",
    "AugmenterPlugin",
    "Availability",
    "BackendPlugin",
    "BoolParam",
    "Bf16Support",
    "Categorical",
    "choice_label",
    "cpu_bf16_support",
    "ChoiceParam",
    "CriteriaError",
    "CriteriaWarning",
    "cuda_devices",
    "CudaDevice",
    "FloatParam",
    "FloatRange",
    "FormulationPlugin",
    "HeadPlugin",
    "hookimpl",
    "IntParam",
    "IntRange",
    "LossPlugin",
    "MaskingPlugin",
    "OptimizerPlugin",
    "PeftPlugin",
    "Plugin",
    "PLUGIN_API",
    "PluginConfig",
    "Post",
    "Precision",
    "PrunerPlugin",
    "Registry",
    "Requirements",
    "Runtime",
    "STOP_WORDS",
    "SamplerPlugin",
    "SchedulerPlugin",
    "SearchRange",
    "TrainingPlan",
    "Units",
    "pair_units",
    "post_units",
    "usable_cores",
    "with_criteria",
    "Word",
    "__version__",
]
