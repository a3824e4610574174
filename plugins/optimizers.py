"""Built-in optimizers. Heavy packages are imported inside ``build`` only."""

from __future__ import annotations

from typing import Any, Iterable

from pydantic import field_validator, model_validator

from criteria import BoolParam, ChoiceParam, FloatParam, OptimizerPlugin, PluginConfig, Requirements, hookimpl

# Default search ranges follow DeBERTa-base practice; the bounds admit the larger learning rates
# small encoders such as MiniLM prefer (1e-4 to 5e-4).
BETAS = ((0.9, 0.999), (0.9, 0.98), (0.95, 0.999))


class AdamConfig(PluginConfig):
    lr: float = FloatParam(3e-5, ge=1e-7, le=1e-2, search=(1e-6, 5e-5), log=True, description="Peak learning rate.")
    weight_decay: float = FloatParam(0.01, ge=0.0, le=1.0, search=(0.0, 0.1), description="Decoupled weight decay.")
    betas: tuple[float, float] = ChoiceParam((0.9, 0.999), search=BETAS, description="Moment decay rates.")
    eps: float = ChoiceParam(1e-8, search=(1e-8, 1e-7, 1e-6), gt=0.0, le=1e-3, description="Denominator term.")

    @field_validator("betas")
    @classmethod
    def _betas_in_unit_interval(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError("each beta must be in [0, 1)")
        return betas


class AdamW(OptimizerPlugin):
    name = "adamw"
    summary = "AdamW (torch): Adam with decoupled weight decay; the transformer fine-tuning default."
    priority = 10
    Config = AdamConfig

    def build(self, groups: Iterable[dict[str, Any]]) -> Any:
        import torch

        c = self.config
        return torch.optim.AdamW(self.param_groups(groups), lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)


class Lamb(OptimizerPlugin):
    name = "lamb"
    summary = "LAMB (torch-optimizer): layer-wise adaptive moments, stable at large batch sizes."
    Config = AdamConfig
    requires = Requirements.of({"torch_optimizer": "torch-optimizer"})

    def build(self, groups: Iterable[dict[str, Any]]) -> Any:
        import torch_optimizer

        c = self.config
        return torch_optimizer.Lamb(self.param_groups(groups), lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)


class AdamW8bit(OptimizerPlugin):
    name = "adamw_8bit"
    summary = "8-bit AdamW (bitsandbytes): optimizer state in 8 bits, about 4x less state memory."
    Config = AdamConfig
    requires = Requirements.of({"bitsandbytes": "bitsandbytes"})

    def build(self, groups: Iterable[dict[str, Any]]) -> Any:
        import bitsandbytes as bnb

        c = self.config
        return bnb.optim.AdamW8bit(self.param_groups(groups), lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)


class LionConfig(PluginConfig):
    # Lion's sign update is larger than Adam's, so it wants a smaller lr and larger weight decay.
    lr: float = FloatParam(1e-5, ge=1e-7, le=1e-2, search=(1e-6, 5e-5), log=True)
    weight_decay: float = FloatParam(0.05, ge=0.0, le=1.0, search=(0.0, 0.1))
    betas: tuple[float, float] = ChoiceParam((0.9, 0.99), search=((0.9, 0.99), (0.95, 0.98)))


class Lion(OptimizerPlugin):
    name = "lion"
    summary = "Lion (lion-pytorch): sign-momentum optimizer with half of Adam's state."
    Config = LionConfig
    requires = Requirements.of({"lion_pytorch": "lion-pytorch"})

    def build(self, groups: Iterable[dict[str, Any]]) -> Any:
        from lion_pytorch import Lion as LionOptimizer

        c = self.config
        return LionOptimizer(self.param_groups(groups), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)


class SGDConfig(PluginConfig):
    lr: float = FloatParam(1e-2, ge=1e-6, le=1.0, search=(1e-4, 1e-1), log=True)
    momentum: float = FloatParam(0.9, ge=0.0, lt=1.0, search=(0.0, 0.95))
    nesterov: bool = BoolParam(False)
    weight_decay: float = FloatParam(0.0, ge=0.0, le=1.0, search=(0.0, 0.1))

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDConfig:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov = true needs momentum > 0")
        return self


class SGD(OptimizerPlugin):
    name = "sgd"
    summary = "SGD (torch) with optional (Nesterov) momentum."
    Config = SGDConfig

    def build(self, groups: Iterable[dict[str, Any]]) -> Any:
        import torch

        c = self.config
        return torch.optim.SGD(self.param_groups(groups), lr=c.lr, momentum=c.momentum,
                               nesterov=c.nesterov, weight_decay=c.weight_decay)


@hookimpl
def register_optimizers(register):
    register(AdamW, Lamb, AdamW8bit, Lion, SGD)
