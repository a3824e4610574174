"""Training and evaluation modes of a run's plugins.

torch switches a module with ``train()`` / ``eval()``; some plugins build objects with modes of
their own (a schedule-free optimizer evaluates with averaged weights that it swaps in with
``optimizer.eval()``). The engine announces each switch here, and every plugin of the trial hears
it through :meth:`~criteria.plugin.base.Plugin.before_training` and
:meth:`~criteria.plugin.base.Plugin.before_evaluation`, with what its ``build`` returned.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

from criteria.plugin.base import Plugin

__all__ = ["PluginModes"]


class PluginModes:
    """Tells each plugin when the run switches mode; only on a change, so a plugin's hook can
    assume it alternates (``optimizer.eval()`` twice in a row would average twice)."""

    def __init__(self, plugins: Mapping[str, Plugin], built: Mapping[str, Any]) -> None:
        # What each kind's plugin built, by kind; a kind whose object the run does not hold
        # (none yet) hears the switch with None.
        self._pairs = [(plugin, built.get(kind)) for kind, plugin in plugins.items()]
        self.mode: Literal["train", "eval"] | None = None

    def train(self) -> None:
        if self.mode != "train":
            self.mode = "train"
            for plugin, built in self._pairs:
                plugin.before_training(built)

    def eval(self) -> None:
        if self.mode != "eval":
            self.mode = "eval"
            for plugin, built in self._pairs:
                plugin.before_evaluation(built)
