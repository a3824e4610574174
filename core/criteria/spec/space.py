"""The search space a study samples from, built from the registered plugins and a spec.

Define-by-run: per kind a categorical over the allowed plugins (``optimizer``), then the chosen
plugin's parameters namespaced by kind and plugin (``optimizer.lion.lr``), so conditional spaces
come for free and names never collide. Core knobs live under ``train.``. A sampled point is an
engine :class:`~criteria.engine.config.TrialConfig`; :mod:`criteria.spec.tables` reads the spec
tables that fix or narrow each parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from pydantic import BaseModel

from criteria.engine.config import TrialConfig
from criteria.plugin.base import Plugin
from criteria.plugin.kinds import Kind
from criteria.plugin.ranges import Categorical, SearchRange
from criteria.plugin.registry import PluginInfo

__all__ = ["ConfigSpace", "KindSpace", "SearchSpace", "TrialConfig"]


@dataclass
class ConfigSpace:
    """One config model: values the spec froze and ranges to search, the rest at defaults."""

    config_cls: type[BaseModel]
    prefix: str
    fixed: dict[str, Any] = field(default_factory=dict)
    searched: dict[str, SearchRange] = field(default_factory=dict)

    def suggest(self, trial: Any) -> BaseModel:
        values = dict(self.fixed)
        for name, search in self.searched.items():
            values[name] = search.suggest(trial, f"{self.prefix}.{name}")
        return self.config_cls(**values)

    def default(self) -> BaseModel:
        """The configuration with nothing searched: frozen values, then declared defaults."""
        return self.config_cls(**self.fixed)

    def dimensions(self) -> Iterator[tuple[str, SearchRange]]:
        for name, search in self.searched.items():
            yield f"{self.prefix}.{name}", search


@dataclass
class KindSpace:
    """The plugins a study may use for one kind, each with its own config space."""

    kind: Kind
    options: dict[str, tuple[PluginInfo, ConfigSpace]]

    def suggest(self, trial: Any) -> Plugin:
        names = list(self.options)
        name = trial.suggest_categorical(self.kind.name, names) if len(names) > 1 else names[0]
        info, space = self.options[name]
        return info.cls(space.suggest(trial))

    def default(self) -> Plugin:
        info, space = next(iter(self.options.values()))
        return info.cls(space.default())

    def dimensions(self) -> Iterator[tuple[str, SearchRange]]:
        if len(self.options) > 1:
            yield self.kind.name, Categorical(tuple(self.options))
        for _, space in self.options.values():
            yield from space.dimensions()


@dataclass
class SearchSpace:
    """Everything a trial samples: the train knobs and each per-trial kind."""

    train: ConfigSpace
    kinds: dict[str, KindSpace]

    def suggest(self, trial: Any) -> TrialConfig:
        """Sample one configuration from an ``optuna.Trial`` (define-by-run)."""
        train = self.train.suggest(trial)
        return TrialConfig(train, {name: ks.suggest(trial) for name, ks in self.kinds.items()})

    def default(self) -> TrialConfig:
        """The configuration a single training run uses: first listed plugin, frozen values, defaults."""
        return TrialConfig(self.train.default(), {name: ks.default() for name, ks in self.kinds.items()})

    def dimensions(self) -> list[tuple[str, SearchRange]]:
        dims = list(self.train.dimensions())
        for kind_space in self.kinds.values():
            dims.extend(kind_space.dimensions())
        return dims
