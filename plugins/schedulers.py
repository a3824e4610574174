"""Built-in learning-rate schedulers (from transformers), stepped once per optimizer step."""

from __future__ import annotations

from typing import Any

from criteria import FloatParam, PluginConfig, SchedulerPlugin, TrainingPlan, hookimpl


class Linear(SchedulerPlugin):
    name = "linear"
    summary = "Linear warmup, then linear decay to zero."
    priority = 10

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_linear_schedule_with_warmup

        return get_linear_schedule_with_warmup(optimizer, plan.warmup_steps, plan.total_steps)


class CosineConfig(PluginConfig):
    min_lr_ratio: float = FloatParam(0.0, ge=0.0, le=1.0, search=(0.0, 0.1), description="Final lr / peak lr.")


class Cosine(SchedulerPlugin):
    name = "cosine"
    summary = "Linear warmup, then half a cosine down to a floor."
    Config = CosineConfig

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_cosine_with_min_lr_schedule_with_warmup

        return get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, plan.warmup_steps, plan.total_steps, min_lr_rate=self.config.min_lr_ratio
        )


class Constant(SchedulerPlugin):
    name = "constant"
    summary = "Linear warmup, then a constant learning rate."

    def build(self, optimizer: Any, plan: TrainingPlan) -> Any:
        from transformers import get_constant_schedule_with_warmup

        return get_constant_schedule_with_warmup(optimizer, plan.warmup_steps)


@hookimpl
def register_schedulers(register):
    register(Linear, Cosine, Constant)
