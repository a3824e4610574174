"""Built-in optimizers. Heavy packages are imported inside ``build`` only.

Every optimizer receives the engine's parameter groups through ``self.param_groups`` (which turns
each group's ``lr_scale`` into its own ``lr``), so the head learning rate, layer-wise decay and
PEFT scales apply to all of them alike. Optimizers whose fields are the same share a ``Config``.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, ClassVar, Iterable

from criteria import BoolParam, ChoiceParam, FloatParam, OptimizerPlugin, PluginConfig, Requirements, hookimpl
from pydantic import field_validator

# Default search ranges follow DeBERTa-base practice; the bounds admit the larger learning rates
# small encoders such as MiniLM prefer (1e-4 to 5e-4).
BETAS = ((0.9, 0.999), (0.9, 0.98), (0.95, 0.999))
EPS = (1e-8, 1e-7, 1e-6)


def _check_betas(betas: tuple[float, ...]) -> tuple[float, ...]:
    if not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError("each beta must be in [0, 1)")
    return betas


# --- configs -------------------------------------------------------------------------------


class AdaptiveConfig(PluginConfig):
    """Learning rate and weight decay of the adaptive (Adam-like) optimizers."""

    lr: float = FloatParam(3e-5, ge=1e-7, le=1e-2, search=(1e-6, 5e-5), log=True,
                           description="Peak learning rate.")
    weight_decay: float = FloatParam(0.01, ge=0.0, le=1.0, search=(0.0, 0.1), description="Weight decay.")


class AdamConfig(AdaptiveConfig):
    betas: tuple[float, float] = ChoiceParam((0.9, 0.999), search=BETAS, description="Moment decay rates.")
    eps: float = ChoiceParam(1e-8, search=EPS, gt=0.0, le=1e-3, description="Denominator term.")

    _betas_in_unit_interval = field_validator("betas")(_check_betas)


class AdaBeliefConfig(AdamConfig):
    # AdaBelief adds eps inside the square root as well as outside it, so its eps is on the scale
    # of a variance: 1e-16 there corresponds to Adam's 1e-8 (the authors' recommendation).
    eps: float = ChoiceParam(
        1e-16, search=(1e-16, 1e-14, 1e-12), gt=0.0, le=1e-6,
        description="Added to the belief (variance) estimate; 1e-16 matches Adam's 1e-8.",
    )


class AdafactorConfig(AdaptiveConfig):
    beta1: float | None = ChoiceParam(
        None, search=(None, 0.9),
        description="First-moment decay; none keeps no first moment (Adafactor's memory saving).",
    )

    @field_validator("beta1")
    @classmethod
    def _beta1_in_unit_interval(cls, beta1: float | None) -> float | None:
        if beta1 is not None:
            _check_betas((beta1,))
        return beta1


class LionConfig(PluginConfig):
    # Lion's sign update has a larger norm than Adam's: its authors advise a 3-10x smaller lr and
    # a correspondingly larger weight decay.
    lr: float = FloatParam(5e-6, ge=1e-8, le=1e-2, search=(5e-7, 2e-5), log=True,
                           description="Peak learning rate.")
    weight_decay: float = FloatParam(0.1, ge=0.0, le=2.0, search=(0.0, 0.3),
                                     description="Decoupled weight decay.")
    betas: tuple[float, float] = ChoiceParam(
        (0.9, 0.99), search=((0.9, 0.99), (0.95, 0.98)),
        description="Update and momentum interpolation rates.",
    )

    _betas_in_unit_interval = field_validator("betas")(_check_betas)


class SGDConfig(PluginConfig):
    # SGD steps are not normalized per parameter: it needs far larger learning rates than Adam.
    lr: float = FloatParam(1e-2, ge=1e-6, le=1.0, search=(1e-4, 1e-1), log=True,
                           description="Peak learning rate.")
    weight_decay: float = FloatParam(0.0, ge=0.0, le=1.0, search=(0.0, 0.1), description="L2 penalty.")


class SGDMomentumConfig(SGDConfig):
    momentum: float = FloatParam(0.9, gt=0.0, lt=1.0, search=(0.8, 0.99), description="Momentum factor.")
    nesterov: bool = BoolParam(False, description="Nesterov momentum.")


# --- helpers -------------------------------------------------------------------------------


def _flat_params(groups: list[dict[str, Any]]) -> list[Any]:
    return [p for group in groups for p in group["params"]]


def torch_kernel(groups: list[dict[str, Any]], *, fused: bool = True) -> dict[str, bool]:
    """The fastest implementation torch offers for these parameters.

    ``fused`` (one kernel for the whole step) needs every parameter to be a floating CUDA tensor;
    otherwise ``foreach`` (batched tensor ops over the parameter list) still beats torch's
    per-parameter loop, which is its default off CUDA. Pass ``fused=False`` for optimizers
    without a fused kernel.
    """
    params = _flat_params(groups)
    if fused and params and all(p.is_cuda and p.is_floating_point() for p in params):
        return {"fused": True}
    return {"foreach": True}


# --- plugins -------------------------------------------------------------------------------


class _ConstructorOptimizer(OptimizerPlugin):
    """An optimizer built as ``optimizer_class()(groups, **config, **options(groups))``: every
    Config field is named as the optimizer's constructor names it, so a plugin only says which
    class (imported lazily) and which fixed options."""

    def optimizer_class(self) -> type:
        raise NotImplementedError

    def options(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        return {}

    def build(self, groups: Iterable[dict[str, Any]]) -> Any:
        groups = self.param_groups(groups)
        return self.optimizer_class()(groups, **self.config.model_dump(), **self.options(groups))


class _TorchOptimizer(_ConstructorOptimizer):
    """A ``torch.optim`` class, run with the fastest kernel torch offers for the parameters."""

    torch_class: ClassVar[str]

    def optimizer_class(self) -> type:
        import torch

        return getattr(torch.optim, self.torch_class)

    def options(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        return torch_kernel(groups)


class AdamW(_TorchOptimizer):
    name = "adamw"
    summary = "AdamW (torch): Adam with decoupled weight decay, fused/foreach kernels chosen automatically."
    priority = 10
    Config = AdamConfig
    torch_class = "AdamW"


class Adam(_TorchOptimizer):
    name = "adam"
    summary = "Adam (torch): weight decay as an L2 term in the gradient, unlike adamw."
    Config = AdamConfig
    torch_class = "Adam"


class RAdam(_TorchOptimizer):
    name = "radam"
    summary = "RAdam (torch): Adam with a rectified, warmup-free early phase; decoupled weight decay."
    Config = AdamConfig
    torch_class = "RAdam"

    def options(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        return {"decoupled_weight_decay": True, **torch_kernel(groups, fused=False)}


class Adafactor(_ConstructorOptimizer):
    name = "adafactor"
    summary = "Adafactor (transformers): factored second moments, little optimizer memory; uses the given lr."
    Config = AdafactorConfig

    def optimizer_class(self) -> type:
        from transformers.optimization import Adafactor as AdafactorOptimizer

        return AdafactorOptimizer

    def options(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        # Without these three switches Adafactor replaces the learning rate by its own
        # step-dependent one and the searched lr (and the scheduler) would be ignored.
        return {"relative_step": False, "scale_parameter": False, "warmup_init": False}


class Lamb(_ConstructorOptimizer):
    name = "lamb"
    summary = "LAMB (torch-optimizer): layer-wise adaptive moments, stable at large batch sizes."
    Config = AdamConfig
    requires = Requirements.of({"torch_optimizer": "torch-optimizer"})

    def optimizer_class(self) -> type:
        import torch_optimizer

        return torch_optimizer.Lamb


class NovoGrad(Lamb):
    name = "novograd"
    summary = "NovoGrad (torch-optimizer): per-layer second moments, normalized gradients."

    def optimizer_class(self) -> type:
        import torch_optimizer

        return torch_optimizer.NovoGrad


class AdaBelief(_ConstructorOptimizer):
    name = "adabelief"
    summary = "AdaBelief (adabelief-pytorch): steps scaled by the belief in the gradient's direction."
    Config = AdaBeliefConfig
    requires = Requirements.of({"adabelief_pytorch": "adabelief-pytorch"})

    def optimizer_class(self) -> type:
        from adabelief_pytorch import AdaBelief as AdaBeliefOptimizer

        return AdaBeliefOptimizer

    def options(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        return {"weight_decouple": True, "rectify": True, "print_change_log": False}

    def build(self, groups: Iterable[dict[str, Any]]) -> Any:
        # The constructor prints a coloured banner and its settings on every call (once per
        # trial and fold); print_change_log=False only drops part of it.
        with contextlib.redirect_stdout(io.StringIO()):
            return super().build(groups)


class Lion(_ConstructorOptimizer):
    name = "lion"
    summary = "Lion (lion-pytorch): sign-momentum optimizer with half of Adam's state."
    Config = LionConfig
    requires = Requirements.of({"lion_pytorch": "lion-pytorch"})

    def optimizer_class(self) -> type:
        from lion_pytorch import Lion as LionOptimizer

        return LionOptimizer


class AdamW8bit(_ConstructorOptimizer):
    name = "adamw_8bit"
    summary = "8-bit AdamW (bitsandbytes): optimizer state in 8 bits, about 4x less state memory."
    Config = AdamConfig
    requires = Requirements.of({"bitsandbytes": "bitsandbytes"})

    def optimizer_class(self) -> type:
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit


class Lion8bit(AdamW8bit):
    name = "lion_8bit"
    summary = "8-bit Lion (bitsandbytes): Lion's single momentum kept in 8 bits."
    Config = LionConfig

    def optimizer_class(self) -> type:
        import bitsandbytes as bnb

        return bnb.optim.Lion8bit


class SGD(_TorchOptimizer):
    name = "sgd"
    summary = "Plain SGD (torch), no momentum."
    Config = SGDConfig
    torch_class = "SGD"


class SGDMomentum(SGD):
    name = "sgd_momentum"
    summary = "SGD (torch) with heavy-ball or Nesterov momentum."
    Config = SGDMomentumConfig


@hookimpl
def register_optimizers(register):
    register(AdamW, Adam, RAdam, Adafactor, Lamb, NovoGrad, AdaBelief, Lion, AdamW8bit, Lion8bit,
             SGD, SGDMomentum)
