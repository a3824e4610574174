"""Built-in classification heads."""

from __future__ import annotations

from typing import Any

from criteria import FloatParam, HeadPlugin, PluginConfig, hookimpl


class HeadConfig(PluginConfig):
    dropout: float = FloatParam(0.1, ge=0.0, le=0.9, search=(0.1, 0.5), description="Dropout before the classifier.")


class LinearHead(HeadPlugin):
    name = "linear"
    summary = "A linear classifier on the [CLS] token, after dropout."
    priority = 10
    Config = HeadConfig

    def build(self, hidden_size: int, num_labels: int) -> Any:
        from criteria_builtins.modules import ClsLinearHead

        return ClsLinearHead(hidden_size, num_labels, self.config.dropout)


@hookimpl
def register_heads(register):
    register(LinearHead)
