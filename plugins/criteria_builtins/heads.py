"""Built-in classification heads: how the encoder's token states become two logits.

The torch modules live in :mod:`criteria_builtins.modules`, imported inside ``build`` so listing
plugins stays free of torch.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from criteria import ChoiceParam, FloatParam, HeadPlugin, IntParam, PluginConfig, hookimpl


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


class PoolerHead(HeadPlugin):
    name = "pooler"
    summary = ("A linear classifier on the encoder's own pooler (dense + tanh on [CLS]); "
               "encoders without one (DeBERTa-v2) get the head's own.")
    Config = HeadConfig

    def build(self, hidden_size: int, num_labels: int) -> Any:
        from criteria_builtins.modules import EncoderPoolerHead

        return EncoderPoolerHead(hidden_size, num_labels, self.config.dropout)


class _PoolingHead(HeadPlugin):
    """A linear classifier on a pooled vector; subclasses say how to pool."""

    Config = HeadConfig

    def pooling(self, hidden_size: int) -> Any:
        raise NotImplementedError

    def build(self, hidden_size: int, num_labels: int) -> Any:
        import torch

        from criteria_builtins.modules import PooledHead

        classifier = torch.nn.Linear(hidden_size, num_labels)
        return PooledHead(self.pooling(hidden_size), classifier, self.config.dropout)


class MeanHead(_PoolingHead):
    name = "mean"
    summary = "A linear classifier on the mean of the real (unpadded) token states."

    def pooling(self, hidden_size: int) -> Any:
        from criteria_builtins.modules import MeanPooling

        return MeanPooling()


class MaxHead(_PoolingHead):
    name = "max"
    summary = "A linear classifier on the element-wise maximum over the real token states."

    def pooling(self, hidden_size: int) -> Any:
        from criteria_builtins.modules import MaxPooling

        return MaxPooling()


class AttentionHead(_PoolingHead):
    name = "attention"
    summary = "A linear classifier on an attention-weighted mean of the real tokens (learned scores)."

    def pooling(self, hidden_size: int) -> Any:
        from criteria_builtins.modules import AttentionPooling

        return AttentionPooling(hidden_size)


class MlpConfig(HeadConfig):
    dropout: float = FloatParam(0.1, ge=0.0, le=0.9, search=(0.1, 0.5),
                                description="Dropout on the pooled vector and after each hidden layer.")
    pooling: Literal["cls", "mean"] = ChoiceParam("cls", description="What the MLP reads: [CLS] or the masked mean.")
    hidden_dim: int = IntParam(256, ge=8, le=8192, search=(64, 1024), log=True,
                               description="Width of each hidden layer.")
    activation: Literal["relu", "gelu", "tanh"] = ChoiceParam("gelu")


class _MlpHead(HeadPlugin):
    """An MLP on [CLS] or on the masked mean; subclasses fix the depth."""

    Config = MlpConfig
    hidden_layers: ClassVar[int]

    def build(self, hidden_size: int, num_labels: int) -> Any:
        from criteria_builtins.modules import ClsPooling, MeanPooling, PooledHead, mlp

        c = self.config
        pool = {"cls": ClsPooling, "mean": MeanPooling}[c.pooling]()
        classifier = mlp(hidden_size, c.hidden_dim, num_labels, self.hidden_layers, c.activation, c.dropout)
        return PooledHead(pool, classifier, c.dropout)


class Mlp1Head(_MlpHead):
    name = "mlp1"
    summary = "An MLP with one hidden layer (dropout after it) on [CLS] or the masked mean."
    hidden_layers = 1


class Mlp2Head(_MlpHead):
    name = "mlp2"
    summary = "An MLP with two hidden layers (dropout after each) on [CLS] or the masked mean."
    hidden_layers = 2


@hookimpl
def register_heads(register):
    register(LinearHead, PoolerHead, MeanHead, MaxHead, AttentionHead, Mlp1Head, Mlp2Head)
