"""The search space a study samples from, built from the registered plugins and a spec.

Define-by-run: per kind a categorical over the allowed plugins (``optimizer``), then the chosen
plugin's parameters namespaced by kind and plugin (``optimizer.lion.lr``), so conditional spaces
come for free and names never collide. Core knobs live under ``train.`` (and ``pretrain.``, with
a ``[pretrain]`` section); a kind that serves a stage (masking strategies) is sampled only in
trials whose stage runs. A sampled point is an
engine :class:`~criteria.engine.config.TrialConfig`; :mod:`criteria.spec.tables` reads the spec
tables that fix or narrow each parameter. Plugins that require or exclude one another narrow the
later kinds' choices (:mod:`criteria.spec.choices`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from pydantic import BaseModel

from criteria.engine.config import TrialConfig
from criteria.plugin.base import Plugin
from criteria.plugin.kinds import Kind
from criteria.plugin.ranges import Categorical, SearchRange
from criteria.plugin.registry import PluginInfo
from criteria.spec.choices import PluginChoices, choice_parameter

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

    def suggest(self, trial: Any, offered: Sequence[str] | None = None) -> Plugin:
        """Sample a plugin among ``offered`` (default: every option), then its parameters."""
        names = list(self.options) if offered is None else list(offered)
        if len(names) > 1:
            name = trial.suggest_categorical(choice_parameter(self.kind.name, names, list(self.options)), names)
        else:
            name = names[0]
        info, space = self.options[name]
        return info.cls(space.suggest(trial))

    def default(self, name: str | None = None) -> Plugin:
        """Plugin ``name`` (default: the first option) with its frozen values and defaults."""
        info, space = self.options[name] if name is not None else next(iter(self.options.values()))
        return info.cls(space.default())

    def dimensions(self, offered: Sequence[Sequence[str]] | None = None) -> Iterator[tuple[str, SearchRange]]:
        """The categoricals choosing among each set of names in ``offered`` (default: one over
        every option), then every option's parameters."""
        for names in offered if offered is not None else [list(self.options)]:
            if len(names) > 1:
                yield choice_parameter(self.kind.name, names, list(self.options)), Categorical(tuple(names))
        for _, space in self.options.values():
            yield from space.dimensions()


@dataclass
class SearchSpace:
    """Everything a trial samples: the train knobs, the pretraining stage's (when the spec has
    one) and each per-trial kind. ``context`` holds the plugins fixed for the whole study
    (sampler, pruner), which may rule out per-trial ones."""

    train: ConfigSpace
    kinds: dict[str, KindSpace]
    context: Sequence[Plugin] = ()
    pretrain: ConfigSpace | None = None
    choices: PluginChoices = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.choices = PluginChoices(
            {name: [info.cls for info, _ in ks.options.values()] for name, ks in self.kinds.items()},
            context=[type(plugin) for plugin in self.context],
        )

    def suggest(self, trial: Any) -> TrialConfig:
        """Sample one configuration from an ``optuna.Trial`` (define-by-run), offering at each
        kind only the plugins compatible with those chosen before it."""
        train = self.train.suggest(trial)
        pretrain = self.pretrain.suggest(trial) if self.pretrain is not None else None
        runs = {"pretrain": pretrain is not None and pretrain.runs}  # type: ignore[attr-defined]
        plugins: dict[str, Plugin] = {}
        for name, kind_space in self.kinds.items():
            offered = [cls.name for cls in self.choices.allowed(name, [type(p) for p in plugins.values()])]
            stage = kind_space.kind.stage
            # A stage that does not run uses none of its kind: nothing is sampled for it.
            plugins[name] = kind_space.suggest(trial, offered) if stage is None or runs[stage] \
                else kind_space.default(offered[0])
        return TrialConfig(train, plugins, pretrain)  # type: ignore[arg-type]

    def default(self) -> TrialConfig:
        """The configuration a single training run uses: the first listed plugin of each kind that
        fits those before it, frozen values, defaults."""
        first = self.choices.first()
        return TrialConfig(self.train.default(),
                           {name: ks.default(first[name].name) for name, ks in self.kinds.items()},
                           self.pretrain.default() if self.pretrain is not None else None)  # type: ignore[arg-type]

    def dimensions(self) -> list[tuple[str, SearchRange]]:
        dims = list(self.train.dimensions())
        if self.pretrain is not None:
            dims.extend(self.pretrain.dimensions())
        offered = self.choices.offered()
        for name, kind_space in self.kinds.items():
            dims.extend(kind_space.dimensions(offered[name]))
        return dims
