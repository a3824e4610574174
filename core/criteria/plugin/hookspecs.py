"""The hooks a plugin distribution implements. One hook per kind of plugin.

Each hook receives ``register``, a callback taking one or more plugin classes::

    from criteria import hookimpl

    @hookimpl
    def register_optimizers(register):
        register(MyOptimizer)

A distribution makes its module known through an entry point in the ``criteria`` group::

    [project.entry-points.criteria]
    my_optimizers = "my_package.optimizers"

and says which versions of this contract it was written for with a module-level constant::

    CRITERIA_PLUGIN_API = 1          # or a collection: (1, 2)

The contract's version is :data:`PLUGIN_API`. Within one version the contract only grows: new
hooks, new optional methods and attributes with defaults; nothing a plugin relies on is removed or
changes meaning. A change that could break a plugin bumps the version, and a module that does not
declare the running version is listed as broken with the reason instead of being loaded. A module
that declares nothing was written for version 1, the first.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("criteria")

#: The version of the plugin contract (hooks, base classes, build signatures) this criteria provides.
PLUGIN_API = 1
#: The module-level name under which a plugin module declares the versions it supports.
API_DECLARATION = "CRITERIA_PLUGIN_API"

Register = Callable[..., None]


@hookspec
def register_optimizers(register: Register) -> None:
    """Register optimizer plugins (subclasses of ``criteria.OptimizerPlugin``)."""


@hookspec
def register_schedulers(register: Register) -> None:
    """Register learning-rate scheduler plugins (subclasses of ``criteria.SchedulerPlugin``)."""


@hookspec
def register_peft_methods(register: Register) -> None:
    """Register parameter-efficient fine-tuning plugins (subclasses of ``criteria.PeftPlugin``)."""


@hookspec
def register_formulations(register: Register) -> None:
    """Register formulation plugins (subclasses of ``criteria.FormulationPlugin``): how (post,
    criterion) pairs become model inputs (cross-encoder pairs, one post for every criterion, ...)."""


@hookspec
def register_heads(register: Register) -> None:
    """Register classification-head plugins (subclasses of ``criteria.HeadPlugin``)."""


@hookspec
def register_losses(register: Register) -> None:
    """Register loss plugins (subclasses of ``criteria.LossPlugin``)."""


@hookspec
def register_augmenters(register: Register) -> None:
    """Register augmenter plugins (subclasses of ``criteria.AugmenterPlugin``): extra training
    examples rewritten from training posts (synonyms, contextual replacement, fewer sentences)."""


@hookspec
def register_masking_strategies(register: Register) -> None:
    """Register masking-strategy plugins (subclasses of ``criteria.MaskingPlugin``): which tokens
    the continued-pretraining stage hides (single tokens, whole words, spans)."""


@hookspec
def register_pruners(register: Register) -> None:
    """Register Optuna pruner plugins (subclasses of ``criteria.PrunerPlugin``)."""


@hookspec
def register_samplers(register: Register) -> None:
    """Register Optuna sampler plugins (subclasses of ``criteria.SamplerPlugin``)."""


@hookspec
def register_backends(register: Register) -> None:
    """Register hardware-backend plugins (subclasses of ``criteria.BackendPlugin``)."""
