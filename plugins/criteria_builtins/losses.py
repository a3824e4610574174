"""Built-in training losses. ``class_counts`` comes from the training fold; the losses that weight
classes by it share the weight helpers in :mod:`criteria_builtins.modules`."""

from __future__ import annotations

from typing import Any, Literal, Sequence

from criteria import ChoiceParam, FloatParam, LossPlugin, PluginConfig, hookimpl

GAMMAS = (1.0, 2.0, 3.0)


class CrossEntropy(LossPlugin):
    name = "cross_entropy"
    summary = "Cross entropy over the two classes."
    priority = 10

    def build(self, class_counts: Sequence[int]) -> Any:
        import torch

        return torch.nn.CrossEntropyLoss()


class WeightedCrossEntropy(LossPlugin):
    name = "weighted_cross_entropy"
    summary = "Cross entropy with each class weighted by its inverse frequency in the training fold."

    def build(self, class_counts: Sequence[int]) -> Any:
        import torch

        from criteria_builtins.modules import inverse_frequency_weights

        return torch.nn.CrossEntropyLoss(weight=inverse_frequency_weights(class_counts))


class LabelSmoothingConfig(PluginConfig):
    smoothing: float = FloatParam(0.1, ge=0.0, le=0.5, search=(0.0, 0.2),
                                  description="Share of the target mass spread over both classes.")


class LabelSmoothing(LossPlugin):
    name = "label_smoothing"
    summary = "Cross entropy against smoothed targets: discourages over-confident logits."
    Config = LabelSmoothingConfig

    def build(self, class_counts: Sequence[int]) -> Any:
        import torch

        return torch.nn.CrossEntropyLoss(label_smoothing=self.config.smoothing)


class BceConfig(PluginConfig):
    pos_weight: float = FloatParam(
        2.0, gt=0.0, le=100.0, search=(1.0, 5.0), description="Weight of positive examples (1: unweighted)."
    )


class Bce(LossPlugin):
    name = "bce"
    summary = "Binary cross entropy on the positive-class log-odds, positives weighted by pos_weight."
    Config = BceConfig

    def build(self, class_counts: Sequence[int]) -> Any:
        from criteria_builtins.modules import LogitDifferenceBCE

        return LogitDifferenceBCE(self.config.pos_weight)


class FocalConfig(PluginConfig):
    gamma: float = ChoiceParam(2.0, search=GAMMAS, ge=0.0, le=10.0, description="Focusing strength.")
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


class ClassBalancedFocalConfig(PluginConfig):
    gamma: float = ChoiceParam(2.0, search=GAMMAS, ge=0.0, le=10.0, description="Focusing strength.")
    beta: float = ChoiceParam(
        0.999, search=(0.9, 0.99, 0.999, 0.9999), ge=0.0, lt=1.0,
        description="Effective-number decay: 0 weighs classes equally, near 1 by inverse frequency.",
    )


class ClassBalancedFocal(LossPlugin):
    name = "class_balanced_focal"
    summary = "Focal loss with class weights from effective sample numbers (Cui et al., 2019)."
    Config = ClassBalancedFocalConfig

    def build(self, class_counts: Sequence[int]) -> Any:
        from criteria_builtins.modules import FocalLoss, effective_number_weights

        return FocalLoss(self.config.gamma, effective_number_weights(class_counts, self.config.beta))


@hookimpl
def register_losses(register):
    register(CrossEntropy, WeightedCrossEntropy, Bce, Focal, ClassBalancedFocal, LabelSmoothing)
