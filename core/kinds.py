"""The kinds of plugin, and the base class each kind's plugins subclass.

A kind base fixes what ``build`` receives and returns, so the engine can use any plugin of that
kind without knowing its name. Type hints name torch/optuna types as strings only: nothing heavy is
imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Sequence

from criteria.plugin import Plugin

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    import torch

    from criteria.runtime import Runtime

__all__ = [
    "KINDS",
    "BackendPlugin",
    "HeadPlugin",
    "Kind",
    "LossPlugin",
    "OptimizerPlugin",
    "PeftPlugin",
    "PrunerPlugin",
    "SamplerPlugin",
    "SchedulerPlugin",
    "kind_named",
]


class OptimizerPlugin(Plugin):
    """Builds a ``torch.optim.Optimizer``. Its ``Config`` must have an ``lr`` field: the engine
    scales it per parameter group (head learning rate, layer-wise decay) through ``lr_scale``."""

    kind: ClassVar[str] = "optimizer"

    @classmethod
    def contract_problems(cls) -> list[str]:
        if "lr" not in cls.Config.model_fields:
            return ["an optimizer's Config needs an `lr` field (the engine scales it per group)"]
        return []

    def param_groups(self, groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Turn the engine's groups (``params`` plus an optional ``lr_scale``) into torch groups."""
        base_lr = self.config.lr  # type: ignore[attr-defined]
        out = []
        for group in groups:
            group = dict(group)
            group["lr"] = base_lr * group.pop("lr_scale", 1.0)
            out.append(group)
        return out

    def build(self, groups: Iterable[dict[str, Any]]) -> torch.optim.Optimizer:
        raise NotImplementedError


class SchedulerPlugin(Plugin):
    """Builds a learning-rate scheduler stepped once per optimizer step."""

    kind: ClassVar[str] = "scheduler"

    def build(
        self, optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int = 0
    ) -> torch.optim.lr_scheduler.LRScheduler:
        raise NotImplementedError


class PeftPlugin(Plugin):
    """Wraps a transformers model for parameter-efficient fine-tuning (or leaves it whole)."""

    kind: ClassVar[str] = "peft"

    def build(self, model: torch.nn.Module) -> torch.nn.Module:
        raise NotImplementedError


class HeadPlugin(Plugin):
    """Builds the classification head: a module mapping encoder outputs to logits.

    The module is called as ``head(hidden_states, attention_mask)`` with the last hidden states
    ``(batch, seq, hidden)`` and the mask ``(batch, seq)``, and returns ``(batch, num_labels)``.
    """

    kind: ClassVar[str] = "head"

    def build(self, hidden_size: int, num_labels: int) -> torch.nn.Module:
        raise NotImplementedError


class LossPlugin(Plugin):
    """Builds the training loss: a module called as ``loss(logits, labels)``.

    ``class_counts[i]`` is how many training examples have label ``i`` (from the training fold),
    for losses that weight classes.
    """

    kind: ClassVar[str] = "loss"

    def build(self, class_counts: Sequence[int]) -> torch.nn.Module:
        raise NotImplementedError


class PrunerPlugin(Plugin):
    """Builds an ``optuna.pruners.BasePruner``; chosen once per study."""

    kind: ClassVar[str] = "pruner"

    def build(self) -> optuna.pruners.BasePruner:
        raise NotImplementedError


class SamplerPlugin(Plugin):
    """Builds an ``optuna.samplers.BaseSampler``; chosen once per study."""

    kind: ClassVar[str] = "sampler"

    def build(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        raise NotImplementedError


class BackendPlugin(Plugin):
    """Builds the :class:`criteria.runtime.Runtime` the engine trains on: device, mixed
    precision, compilation and memory options."""

    kind: ClassVar[str] = "backend"

    def build(self) -> Runtime:
        raise NotImplementedError


@dataclass(frozen=True)
class Kind:
    """One kind of plugin: its spec section and parameter namespace (``name``), its hook
    (``register_<plural>``), its base class, and how a study treats it."""

    name: str
    plural: str
    base: type[Plugin]
    title: str
    # False: chosen once for the whole study (samplers, pruners), never per trial.
    per_trial: bool = True
    # False: a study uses one plugin with its defaults unless the spec asks to search (backends).
    searched_by_default: bool = True

    @property
    def hook(self) -> str:
        return f"register_{self.plural}"


KINDS: tuple[Kind, ...] = (
    Kind("optimizer", "optimizers", OptimizerPlugin, "Optimizers"),
    Kind("scheduler", "schedulers", SchedulerPlugin, "LR schedulers"),
    Kind("peft", "peft_methods", PeftPlugin, "PEFT methods"),
    Kind("head", "heads", HeadPlugin, "Classification heads"),
    Kind("loss", "losses", LossPlugin, "Losses"),
    Kind("backend", "backends", BackendPlugin, "Hardware backends", searched_by_default=False),
    Kind("sampler", "samplers", SamplerPlugin, "Samplers", per_trial=False, searched_by_default=False),
    Kind("pruner", "pruners", PrunerPlugin, "Pruners", per_trial=False, searched_by_default=False),
)


def kind_named(name: str) -> Kind:
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)
