"""Built-in training losses."""

from __future__ import annotations

from typing import Any, Literal, Sequence

from criteria import ChoiceParam, FloatParam, LossPlugin, PluginConfig, hookimpl


class CrossEntropyConfig(PluginConfig):
    label_smoothing: float = FloatParam(0.0, ge=0.0, lt=0.5, description="Not searched by default.")


class CrossEntropy(LossPlugin):
    name = "cross_entropy"
    summary = "Cross entropy over the two classes."
    priority = 10
    Config = CrossEntropyConfig

    def build(self, class_counts: Sequence[int]) -> Any:
        import torch

        return torch.nn.CrossEntropyLoss(label_smoothing=self.config.label_smoothing)


class FocalConfig(PluginConfig):
    gamma: float = ChoiceParam(2.0, search=(1.0, 2.0, 3.0), ge=0.0, le=10.0, description="Focusing strength.")
    alpha: Literal["none", "inverse_frequency"] = ChoiceParam(
        "inverse_frequency", description="Per-class weights from the training fold's class frequencies."
    )


class Focal(LossPlugin):
    name = "focal"
    summary = "Focal loss: focuses training on hard examples; suits rare positives."
    Config = FocalConfig

    def build(self, class_counts: Sequence[int]) -> Any:
        from criteria_builtins.modules import FocalLoss, inverse_frequency_weights

        alpha = inverse_frequency_weights(class_counts) if self.config.alpha == "inverse_frequency" else None
        return FocalLoss(self.config.gamma, alpha)


@hookimpl
def register_losses(register):
    register(CrossEntropy, Focal)
