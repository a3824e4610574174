"""The plugin base class: what every optimizer, scheduler, head, ... plugin is.

A plugin is a class with a ``name`` (unique within its kind), a one-line ``summary``, a pydantic
``Config`` whose fields declare defaults and search ranges (see :mod:`criteria.plugin.base.ranges`), optional
``requires`` (python packages, CUDA), and a ``build(...)`` that makes the real object. The kind base
classes in :mod:`criteria.plugin.base.kinds` fix what ``build`` receives and returns.

Plugin modules must not import torch, transformers, peft, bitsandbytes, optuna or mlflow at module
level: import them inside ``build``.
"""

from __future__ import annotations

import importlib.util
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Collection, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from criteria import hardware

__all__ = ["Availability", "Plugin", "PluginConfig", "Requirements"]


class StrictModel(BaseModel):
    """Config models whose values come from TOML: unknown keys are errors, and a bool is never
    taken for a number (pydantic would read ``trials = true`` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _a_bool_is_not_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and not _admits_bool(field.annotation):
                raise ValueError("a bool (true or false) is not accepted here")
        return value


def _admits_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(arg, bool) for arg in args)
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return any(_admits_bool(arg) for arg in args)
    return False


class PluginConfig(StrictModel):
    """Base for a plugin's ``Config``: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


@dataclass(frozen=True)
class Availability:
    """Whether a plugin can run on this machine, and if not, why (in words a user can act on)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Requirements:
    """What a plugin needs beyond the core.

    ``packages`` maps an importable module name to the pip requirement that provides it,
    e.g. ``{"lion_pytorch": "lion-pytorch"}``. ``cuda`` asks for a CUDA device with a CUDA
    build of torch; ``min_compute_capability`` (e.g. ``(8, 0)`` for Ampere) narrows that.
    """

    packages: tuple[tuple[str, str], ...] = ()
    cuda: bool = False
    min_compute_capability: tuple[int, int] | None = None

    @classmethod
    def of(
        cls,
        packages: dict[str, str] | None = None,
        *,
        cuda: bool = False,
        min_compute_capability: tuple[int, int] | None = None,
    ) -> Requirements:
        return cls(tuple((packages or {}).items()), cuda, min_compute_capability)

    def describe(self) -> str:
        parts = [pip for _, pip in self.packages]
        if self.cuda:
            cc = self.min_compute_capability
            parts.append(f"CUDA (compute capability >= {cc[0]}.{cc[1]})" if cc else "CUDA")
        return ", ".join(parts)

    def check(self) -> Availability:
        """Answer without importing the packages (``find_spec`` only) so listing stays fast."""
        missing = [pip for module, pip in self.packages if importlib.util.find_spec(module) is None]
        if missing:
            return Availability(False, f"needs {', '.join(missing)}: pip install {' '.join(missing)}")
        if self.cuda:
            return _cuda_availability(self.min_compute_capability)
        return Availability(True)


def _cuda_availability(min_compute_capability: tuple[int, int] | None = None) -> Availability:
    devices = hardware.cuda_devices()
    if not devices:
        return Availability(False, "needs a CUDA GPU; none was found on this machine")
    if hardware.torch_build()["cuda"] is None:
        return Availability(
            False, "this torch build has no CUDA support; install a CUDA build of torch"
        )
    if min_compute_capability is not None:
        best = max(d.compute_capability for d in devices)
        if best < min_compute_capability:
            need = ".".join(map(str, min_compute_capability))
            have = ".".join(map(str, best))
            return Availability(False, f"needs compute capability >= {need}; this GPU has {have}")
    return Availability(True)


class Plugin:
    """Base class of every plugin. Subclass a kind base (``OptimizerPlugin``, ...), not this."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    requires: ClassVar[Requirements] = Requirements()
    # When the spec names no plugin of a kind, the available plugin with the highest priority is
    # the default: the one a single training run uses, and the one chosen for kinds that are not
    # searched (backends, samplers, pruners).
    priority: ClassVar[int] = 0
    # False when ``available()`` depends on something the listing cache does not watch (see
    # :mod:`criteria.plugin.base.listing`): `criteria plugins list` then imports every plugin each time.
    cache_availability: ClassVar[bool] = True
    # Plugins of other kinds this one works only with, or never with, by kind and name: e.g.
    # ``requires_plugins = {"scheduler": ("constant",)}``, ``excludes_plugins = {"head": ("pooler",)}``.
    # A study offers only compatible combinations (see :mod:`criteria.plugin.compatibility`);
    # `criteria validate` rejects a spec that fixes an incompatible one.
    requires_plugins: ClassVar[Mapping[str, Collection[str]]] = {}
    excludes_plugins: ClassVar[Mapping[str, Collection[str]]] = {}

    def __init__(self, config: PluginConfig | None = None, **values: Any) -> None:
        if config is not None and values:
            raise TypeError("pass either a config or keyword values, not both")
        self.config = config if config is not None else self.Config(**values)

    @classmethod
    def contract_problems(cls) -> list[str]:
        """Kind-specific checks a kind base adds to the plugin contract (empty: fine)."""
        return []

    @classmethod
    def available(cls) -> Availability:
        """Whether this plugin can run here. Override to add checks beyond ``requires``;
        keep it cheap and free of heavy imports."""
        return _cached_requirements_check(cls.requires)

    def build(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - kinds override
        raise NotImplementedError

    # The engine switches between training and evaluation the way torch switches a module with
    # ``train()`` and ``eval()``; a plugin whose built object has modes of its own follows here.
    # Both receive what ``build`` returned and are called only on a change of mode.

    def before_training(self, built: Any) -> None:
        """Called before the engine trains (each epoch's first step): e.g. a schedule-free
        optimizer's ``optimizer.train()``."""

    def before_evaluation(self, built: Any) -> None:
        """Called before the engine evaluates, keeps or returns the weights (each validation, the
        best epoch's state, the trained model): e.g. ``optimizer.eval()``, which swaps in a
        schedule-free optimizer's averaged weights."""

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name!r} {self.config!r}>"


@lru_cache(maxsize=None)
def _cached_requirements_check(requirements: Requirements) -> Availability:
    return requirements.check()
