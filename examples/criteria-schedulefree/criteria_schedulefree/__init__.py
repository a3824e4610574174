"""Schedule-free AdamW (Defazio et al., 2024, the `schedulefree` package) as a criteria optimizer.

A schedule-free optimizer needs no learning-rate decay: it keeps two sequences of weights, trains
with one and evaluates with their running average. So it declares that it works only with the
constant scheduler (a study never pairs it with a decaying one), and it follows the engine's
switches between training and evaluation: ``optimizer.eval()`` swaps the averaged weights in
before the engine validates, keeps or saves the model, ``optimizer.train()`` swaps them out before
training goes on. No global hooks are needed.
"""

from criteria import FloatParam, IntParam, OptimizerPlugin, PluginConfig, Requirements, hookimpl

CRITERIA_PLUGIN_API = 1  # the versions of criteria's plugin API this module is written for


class ScheduleFreeAdamWConfig(PluginConfig):
    # Schedule-free runs want a larger learning rate than AdamW with a decaying schedule.
    lr: float = FloatParam(5e-4, ge=1e-7, le=1.0, search=(1e-4, 3e-3), log=True)
    beta1: float = FloatParam(0.9, ge=0.0, lt=1.0, search=(0.85, 0.95),
                              description="Interpolation between the averaged and the trained weights.")
    beta2: float = FloatParam(0.999, ge=0.0, lt=1.0)
    # Named `weight_decay`: the engine exempts biases and norm weights (their groups get 0).
    weight_decay: float = FloatParam(0.01, ge=0.0, le=1.0, search=(0.0, 0.1))
    warmup_steps: int = IntParam(50, ge=0, le=100_000, search=(0, 200),
                                 description="The optimizer's own warmup (the scheduler stays constant).")


class ScheduleFreeAdamW(OptimizerPlugin):
    name = "schedulefree_adamw"
    summary = "Schedule-free AdamW: no decay schedule, evaluates with averaged weights."
    Config = ScheduleFreeAdamWConfig
    requires = Requirements.of({"schedulefree": "schedulefree"})
    requires_plugins = {"scheduler": ("constant",)}

    def build(self, groups):
        import schedulefree  # heavy imports (it imports torch) inside build, never at module level

        c = self.config
        return schedulefree.AdamWScheduleFree(self.param_groups(groups), lr=c.lr, betas=(c.beta1, c.beta2),
                                              weight_decay=c.weight_decay, warmup_steps=c.warmup_steps)

    def before_training(self, optimizer):
        optimizer.train()

    def before_evaluation(self, optimizer):
        optimizer.eval()


@hookimpl
def register_optimizers(register):
    register(ScheduleFreeAdamW)
