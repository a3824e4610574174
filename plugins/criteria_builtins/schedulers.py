"""Built-in learning-rate schedulers, stepped once per optimizer step.

Most come from transformers (or torch) as they are; the warmup length is the core's
``plan.warmup_steps`` (ratio, steps or none). Each schedule multiplies every parameter group's own
learning rate, so the head and layer-wise ratios the engine set hold throughout.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from criteria import ChoiceParam, FloatParam, PluginConfig, SchedulerPlugin, TrainingPlan, hookimpl


class Constant(SchedulerPlugin):
    name = "constant"
    summary = "No schedule (the 'none' option): the learning rate stays flat and warmup is ignored."

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_constant_schedule

        return get_constant_schedule(optimizer)


class ConstantWithWarmup(SchedulerPlugin):
    name = "constant_with_warmup"
    summary = "Linear warmup, then a constant learning rate."

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_constant_schedule_with_warmup

        return get_constant_schedule_with_warmup(optimizer, plan.warmup_steps)


class Linear(SchedulerPlugin):
    name = "linear"
    summary = "Linear warmup, then linear decay to zero."
    priority = 10

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_linear_schedule_with_warmup

        return get_linear_schedule_with_warmup(optimizer, plan.warmup_steps, plan.total_steps)


class CosineConfig(PluginConfig):
    min_lr_ratio: float = FloatParam(0.0, ge=0.0, le=1.0, search=(0.0, 0.1),
                                     description="Final lr / peak lr.")


class Cosine(SchedulerPlugin):
    name = "cosine"
    summary = "Linear warmup, then half a cosine down to a floor."
    Config = CosineConfig

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_cosine_with_min_lr_schedule_with_warmup

        return get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, plan.warmup_steps, plan.total_steps, min_lr_rate=self.config.min_lr_ratio
        )


class CosineRestartsConfig(PluginConfig):
    cycles: int = ChoiceParam(2, search=(1, 2, 4), ge=1, le=100, description="Cosine cycles after warmup.")


class CosineWithRestarts(SchedulerPlugin):
    name = "cosine_with_restarts"
    summary = "Linear warmup, then cosine cycles, each restarting at the peak (hard restarts)."
    Config = CosineRestartsConfig

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_cosine_with_hard_restarts_schedule_with_warmup

        return get_cosine_with_hard_restarts_schedule_with_warmup(
            optimizer, plan.warmup_steps, plan.total_steps, num_cycles=self.config.cycles
        )


class PolynomialConfig(PluginConfig):
    power: float = FloatParam(1.0, gt=0.0, le=10.0, search=(1.0, 3.0),
                              description="Decay exponent (1: linear).")
    lr_end_ratio: float = FloatParam(0.0, ge=0.0, lt=1.0, search=(0.0, 0.1),
                                     description="Final lr / peak lr.")


class Polynomial(SchedulerPlugin):
    name = "polynomial"
    summary = "Linear warmup, then polynomial decay to a floor."
    Config = PolynomialConfig

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_polynomial_decay_schedule_with_warmup

        # transformers takes an absolute end lr relative to the optimizer's default lr (the base
        # lr, before group scaling) and applies the resulting factor to every group.
        lr_end = self.config.lr_end_ratio * optimizer.defaults["lr"]
        return get_polynomial_decay_schedule_with_warmup(
            optimizer, plan.warmup_steps, plan.total_steps, lr_end=lr_end, power=self.config.power
        )


class ExponentialConfig(PluginConfig):
    gamma: float = FloatParam(0.97, gt=0.0, le=1.0, search=(0.95, 0.99), description="LR factor per epoch.")


def _warmup_then_exponential(step: int, *, warmup_steps: int, steps_per_epoch: int, gamma: float) -> float:
    if step < warmup_steps:
        return step / warmup_steps
    return gamma ** ((step - warmup_steps) // steps_per_epoch)


class Exponential(SchedulerPlugin):
    name = "exponential"
    summary = "Linear warmup, then the lr times gamma after every epoch's worth of steps."
    Config = ExponentialConfig

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from torch.optim.lr_scheduler import LambdaLR

        # torch's ExponentialLR decays at every step() and has no warmup: the engine steps per
        # optimizer step, so the per-epoch staircase is a LambdaLR (a partial, so it pickles).
        return LambdaLR(optimizer, functools.partial(
            _warmup_then_exponential, warmup_steps=plan.warmup_steps,
            steps_per_epoch=max(1, plan.steps_per_epoch), gamma=self.config.gamma,
        ))


class OneCycleConfig(PluginConfig):
    pct_start: float = FloatParam(0.3, gt=0.0, lt=1.0, search=(0.1, 0.3),
                                  description="Share of steps spent rising.")


class OneCycle(SchedulerPlugin):
    name = "one_cycle"
    summary = "1cycle (torch): rise from lr/25 to each group's lr over pct_start, then anneal far below it."
    Config = OneCycleConfig

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from torch.optim.lr_scheduler import OneCycleLR

        # The rising phase is 1cycle's own warmup, so plan.warmup_steps is not used. Momentum is
        # left alone (cycle_momentum=False): cycling it would rewrite the betas/momentum the
        # optimizer plugin was configured with, and turn plain SGD into momentum SGD.
        return OneCycleLR(
            optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=max(1, plan.total_steps), pct_start=self.config.pct_start, cycle_momentum=False,
        )


class PlateauConfig(PluginConfig):
    patience: int = ChoiceParam(
        2, search=(2, 5, 10), ge=0, le=100,
        description="Epochs without improvement tolerated; the next one lowers the lr.",
    )
    factor: float = FloatParam(0.5, gt=0.0, lt=1.0, search=(0.5, 0.9), description="LR factor on a plateau.")


class WarmupThenPlateau:
    """Linear warmup per optimizer step, then ``ReduceLROnPlateau`` fed the validation metric.

    Both parts are torch's: a ``LambdaLR`` does the warmup and stops being stepped once it is over
    (stepping it later would overwrite the plateau's reductions). Epochs that end inside the
    warmup are not shown to the plateau: their metric says nothing about a plateau.
    """

    def __init__(self, optimizer: Any, warmup_steps: int, mode: str, patience: int, factor: float) -> None:
        from torch.optim.lr_scheduler import ReduceLROnPlateau
        from transformers import get_constant_schedule_with_warmup

        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.steps = 0
        self.warmup = get_constant_schedule_with_warmup(optimizer, warmup_steps)
        self.plateau = ReduceLROnPlateau(optimizer, mode=mode, patience=patience, factor=factor)

    def step(self) -> None:
        self.steps += 1
        if self.steps <= self.warmup_steps:
            self.warmup.step()

    def on_validation(self, value: float) -> None:
        if self.steps >= self.warmup_steps:
            self.plateau.step(value)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "warmup": self.warmup.state_dict(), "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]
        self.warmup.load_state_dict(state["warmup"])
        self.plateau.load_state_dict(state["plateau"])


class ReduceOnPlateau(SchedulerPlugin):
    name = "reduce_on_plateau"
    summary = "Linear warmup, then the lr times factor whenever the validation metric stops improving."
    Config = PlateauConfig

    def build(self, optimizer: Any, plan: TrainingPlan) -> WarmupThenPlateau:
        mode = "max" if plan.direction == "maximize" else "min"
        return WarmupThenPlateau(optimizer, plan.warmup_steps, mode, self.config.patience, self.config.factor)

    def on_validation(self, scheduler: WarmupThenPlateau, value: float) -> None:
        scheduler.on_validation(value)


class InverseSqrt(SchedulerPlugin):
    name = "inverse_sqrt"
    summary = "Linear warmup, then lr / sqrt(steps / timescale) (transformers)."

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_inverse_sqrt_schedule

        # The timescale is the warmup length, as in transformers. Without warmup transformers
        # falls back to 10,000 steps, which leaves a fine-tuning run of a few hundred steps at an
        # almost constant lr; one epoch halves the lr by the fourth epoch instead.
        timescale = plan.warmup_steps or max(1, plan.steps_per_epoch)
        return get_inverse_sqrt_schedule(optimizer, plan.warmup_steps, timescale=timescale)


class WsdConfig(PluginConfig):
    decay_ratio: float = FloatParam(
        0.2, gt=0.0, le=1.0, search=(0.1, 0.3), description="Share of all steps spent decaying at the end."
    )
    decay_type: Literal["linear", "cosine", "1-sqrt"] = ChoiceParam(
        "cosine", searchable=False, description="Shape of the final decay."
    )


class WarmupStableDecay(SchedulerPlugin):
    name = "warmup_stable_decay"
    summary = "Warmup, a long constant stage, then a short decay to zero (transformers WSD)."
    Config = WsdConfig

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_wsd_schedule

        after_warmup = max(0, plan.total_steps - plan.warmup_steps)
        decay_steps = min(after_warmup, max(1, round(self.config.decay_ratio * plan.total_steps)))
        return get_wsd_schedule(optimizer, plan.warmup_steps, decay_steps,
                                num_training_steps=plan.total_steps, decay_type=self.config.decay_type)


@hookimpl
def register_schedulers(register):
    register(Constant, ConstantWithWarmup, Linear, Cosine, CosineWithRestarts, Polynomial, Exponential,
             OneCycle, ReduceOnPlateau, InverseSqrt, WarmupStableDecay)
