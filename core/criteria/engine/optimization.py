"""How the optimizer steps: parameter groups (head learning rate, layer-wise decay, no decay for
biases and norms), the training plan plugins size themselves by, and one clipped, scaled step."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from criteria.engine.config import TrainConfig
from criteria.engine.freezing import layer_depth
from criteria.plugin.kinds import TrainingPlan

__all__ = ["optimizer_step", "parameter_groups", "training_plan"]

_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
#: Modules trained from scratch on top of the encoder: the head plugin's head, the formulation's
#: scorer and its evidence module. They learn at the head's rate.
_HEAD_MODULES = ("head.", "scorer.", "evidence.")


def parameter_groups(model: nn.Module, *, head_lr_multiplier: float, layerwise_lr_decay: float,
                     weight_decay: float | None, lr_scale: Callable[[str], float] = lambda name: 1.0,
                     ) -> list[dict[str, Any]]:
    """Trainable parameters of a :class:`~criteria.engine.model.CriterionClassifier` grouped by
    learning-rate scale and weight decay.

    The head (and the formulation's scorer and evidence module) learn at ``head_lr_multiplier`` x
    the base rate; encoder layer ``i`` of ``n`` at
    ``layerwise_lr_decay ** (n - i)`` (embeddings count as layer 0), times the PEFT method's
    ``lr_scale`` of the parameter. Biases and norms get no decay when the optimizer declares a
    ``weight_decay`` (``weight_decay`` not None).
    """
    num_layers = getattr(model.encoder.config, "num_hidden_layers", 0)
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(_HEAD_MODULES):
            scale = head_lr_multiplier
        else:
            depth = layer_depth(name, num_layers)
            scale = layerwise_lr_decay ** max(0, num_layers - depth) * lr_scale(name.removeprefix("encoder."))
        no_decay = name.endswith(_NO_DECAY) or param.ndim < 2
        groups.setdefault((scale, no_decay), []).append(param)
    out = []
    for (scale, no_decay), params in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        group: dict[str, Any] = {"params": params, "lr_scale": scale}
        if no_decay and weight_decay is not None:
            group["weight_decay"] = 0.0
        out.append(group)
    return out


def training_plan(train: TrainConfig, steps_per_epoch: int, direction: str) -> TrainingPlan:
    """Steps of the whole run and of its warmup (``warmup_steps`` wins over ``warmup_ratio``)."""
    total = steps_per_epoch * train.epochs
    warmup = min(train.warmup_steps, total) if train.warmup_steps else int(round(train.warmup_ratio * total))
    return TrainingPlan(total_steps=total, warmup_steps=warmup, steps_per_epoch=steps_per_epoch, direction=direction)


def optimizer_step(model: nn.Module, optimizer: Any, scheduler: Any, scaler: Any, max_grad_norm: float,
                   after_step: Callable[[], None] = lambda: None) -> None:
    """Unscale (fp16), clip, step the optimizer and the scheduler, then clear the gradients."""
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    after_step()
    optimizer.zero_grad(set_to_none=True)
