"""Which plugin of each per-trial kind a trial may choose, given those chosen before it.

Plugins may require or exclude plugins of other kinds (:mod:`criteria.plugin.compatibility`).
A define-by-run trial picks one plugin per kind in a fixed order (optimizer, scheduler, peft, ...)
and, at each kind, is offered only the plugins that (1) conflict with nothing chosen so far nor
with the study's sampler and pruner, and (2) still leave every later kind at least one plugin.
So a sampled configuration is always valid: a conflict never becomes a failed trial.

Optuna requires a parameter to have the same choices in every trial. When a trial may choose
among a subset of a kind's plugins only, the categorical is named after that subset
(``scheduler[constant,constant_with_warmup]``), so each name always carries the same choices;
the unrestricted choice keeps the kind's name (``scheduler``). :meth:`PluginChoices.offered`
enumerates every subset a trial can meet, for ``criteria space`` and the samplers' checks.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Mapping, Sequence

from criteria.plugin.base import Plugin
from criteria.plugin.compatibility import conflict

__all__ = ["PluginChoices", "choice_parameter"]


def choice_parameter(kind: str, offered: Sequence[str], every: Sequence[str]) -> str:
    """The Optuna parameter that chooses among ``offered`` of a kind's ``every`` plugins."""
    return kind if list(offered) == list(every) else f"{kind}[{','.join(offered)}]"


class PluginChoices:
    """The per-trial kinds' plugins in sampling order, and the plugins fixed for the whole study
    (``context``: sampler, pruner), with what conflicts with what."""

    def __init__(self, options: Mapping[str, Sequence[type[Plugin]]], context: Iterable[type[Plugin]] = ()) -> None:
        self.kinds = list(options)
        self.options = {kind: tuple(plugins) for kind, plugins in options.items()}
        self.context = tuple(context)
        everything = {cls for plugins in self.options.values() for cls in plugins} | set(self.context)
        # Most plugins declare nothing; the search below only ever looks at those that conflict.
        self._conflicts = {cls: frozenset(other for other in everything if conflict(cls, other)) for cls in everything}
        self._later = [frozenset(cls for kind in self.kinds[i:] for cls in self.options[kind])
                       for i in range(len(self.kinds) + 1)]
        self._completable = lru_cache(maxsize=None)(self._completable_uncached)

    def allowed(self, kind: str, chosen: Sequence[type[Plugin]] = ()) -> list[type[Plugin]]:
        """The plugins of ``kind`` a trial that already chose ``chosen`` (earlier kinds) may choose."""
        index = self.kinds.index(kind)
        return [cls for cls in self.options[kind]
                if self._fits(cls, chosen) and self._can_finish(index + 1, (*chosen, cls))]

    def first(self) -> dict[str, type[Plugin]]:
        """The first allowed plugin of each kind, in order: the configuration of a single run."""
        chosen: list[type[Plugin]] = []
        for kind in self.kinds:
            chosen.append(self.allowed(kind, chosen)[0])
        return dict(zip(self.kinds, chosen))

    def offered(self) -> dict[str, list[tuple[str, ...]]]:
        """Every set of plugin names a trial can be offered, per kind (the full set first)."""
        found: dict[str, dict[tuple[str, ...], None]] = {kind: {} for kind in self.kinds}

        def walk(index: int, chosen: tuple[type[Plugin], ...]) -> None:
            if index == len(self.kinds):
                return
            allowed = self.allowed(self.kinds[index], chosen)
            found[self.kinds[index]][tuple(cls.name for cls in allowed)] = None
            # Choices that rule out the same later plugins lead to the same offers: follow one.
            followed = set()
            for cls in allowed:
                signature = self._conflicts[cls] & self._later[index + 1]
                if signature not in followed:
                    followed.add(signature)
                    walk(index + 1, (*chosen, cls))

        walk(0, ())
        return {kind: sorted(sets, key=lambda names: -len(names)) for kind, sets in found.items()}

    def usable(self) -> dict[str, list[str]]:
        """The plugins of each kind that some valid configuration uses."""
        return {kind: list(dict.fromkeys(name for names in sets for name in names))
                for kind, sets in self.offered().items()}

    def why_unusable(self, kind: str, cls: type[Plugin]) -> str:
        """Why no valid configuration uses ``cls``, in words (for a spec error)."""
        for other in self.context:
            reason = conflict(cls, other)
            if reason:
                return reason
        for other_kind in self.kinds:
            plugins = self.options[other_kind]
            if other_kind != kind and plugins and all(conflict(cls, other) for other in plugins):
                names = ", ".join(repr(other.name) for other in plugins)
                return f"{conflict(cls, plugins[0])}, and [{other_kind}] allows only {names}"
        return "no combination of the plugins the other sections allow works with it"

    # --- the search ----------------------------------------------------------------------------

    def _fits(self, cls: type[Plugin], chosen: Iterable[type[Plugin]]) -> bool:
        conflicts = self._conflicts[cls]
        return not conflicts or not any(other in conflicts for other in (*self.context, *chosen))

    def _can_finish(self, index: int, chosen: tuple[type[Plugin], ...]) -> bool:
        # Only chosen plugins that conflict with something still to choose can block the rest.
        relevant = frozenset(cls for cls in chosen if self._conflicts[cls] & self._later[index])
        return self._completable(index, relevant)

    def _completable_uncached(self, index: int, chosen: frozenset[type[Plugin]]) -> bool:
        if index == len(self.kinds):
            return True
        return any(self._fits(cls, chosen) and self._can_finish(index + 1, (*chosen, cls))
                   for cls in self.options[self.kinds[index]])
