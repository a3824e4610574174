"""The kinds of plugin, and the base class each kind's plugins subclass.

A kind base fixes what ``build`` receives and returns, so the engine can use any plugin of that
kind without knowing its name. Type hints name torch/optuna types as strings only: nothing heavy is
imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Literal, Sequence

from criteria.plugin.base import Plugin

if TYPE_CHECKING:  # pragma: no cover
    import random

    import numpy as np
    import optuna
    import torch

    from criteria.data.augment import AugmentContext, Post
    from criteria.data.corpus import Corpus
    from criteria.data.units import Units
    from criteria.engine.runtime import Runtime
    from criteria.plugin.registry import Registry

__all__ = [
    "KINDS",
    "AugmenterPlugin",
    "BackendPlugin",
    "FormulationPlugin",
    "HeadPlugin",
    "Kind",
    "LossPlugin",
    "MaskingPlugin",
    "OptimizerPlugin",
    "PeftPlugin",
    "PrunerPlugin",
    "SamplerPlugin",
    "SchedulerPlugin",
    "TrainingPlan",
    "kind_named",
]


@dataclass(frozen=True)
class TrainingPlan:
    """What a training run will do, for plugins that size themselves by it (schedulers, AdaLoRA).

    ``total_steps`` counts optimizer steps (after gradient accumulation); ``direction`` is the
    study's (``maximize`` or ``minimize``), for schedulers driven by the validation metric."""

    total_steps: int
    warmup_steps: int = 0
    steps_per_epoch: int = 1
    direction: str = "maximize"


class OptimizerPlugin(Plugin):
    """Builds a ``torch.optim.Optimizer``.

    Its ``Config`` must have a float ``lr`` field: the engine scales it per parameter group (head
    learning rate, layer-wise decay) through ``lr_scale``. It may have a float ``weight_decay``
    field: then the engine exempts biases and normalisation weights from decay (their groups get
    ``weight_decay = 0``); without one, groups carry no ``weight_decay`` key and the optimizer's
    own default applies."""

    kind: ClassVar[str] = "optimizer"

    @classmethod
    def contract_problems(cls) -> list[str]:
        fields = cls.Config.model_fields
        problems = []
        if "lr" not in fields:
            problems.append("an optimizer's Config needs an `lr` field (the engine scales it per group)")
        for name in ("lr", "weight_decay"):
            field = fields.get(name)
            if field is not None and field.annotation not in (float, "float"):
                problems.append(f"an optimizer's `{name}` must be a float field, not {field.annotation!r}")
        return problems

    @property
    def weight_decay(self) -> float | None:
        """The configured weight decay, or None when this optimizer declares none."""
        return getattr(self.config, "weight_decay", None)

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
    """Builds a learning-rate scheduler: a torch ``LRScheduler`` or any object with ``step()``.
    The engine calls its ``step()`` once per optimizer step and :meth:`on_validation` once per
    epoch, after evaluating."""

    kind: ClassVar[str] = "scheduler"

    def build(self, optimizer: torch.optim.Optimizer, plan: TrainingPlan) -> Any:
        raise NotImplementedError

    def on_validation(self, scheduler: Any, value: float) -> None:
        """Called with the epoch's objective value; schedulers driven by it (plateau) act here."""


class PeftPlugin(Plugin):
    """Wraps a transformers encoder for parameter-efficient fine-tuning (or leaves it whole).

    ``build`` returns the model to train; only its parameters with ``requires_grad`` train. The
    other methods have defaults that suit methods without extra needs.
    """

    kind: ClassVar[str] = "peft"
    #: True when layers frozen by the ``[train]`` knobs compute exactly what the base encoder's
    #: layers compute (nothing of the method acts in them, or what acts is frozen at a no-op), so
    #: the frozen-layer cache may stand in for them. Off unless a method says so.
    keeps_frozen_layers: ClassVar[bool] = False

    def build(self, model: torch.nn.Module, plan: TrainingPlan) -> torch.nn.Module:
        raise NotImplementedError

    def lr_scale(self, parameter_name: str) -> float:
        """A learning-rate multiplier for one trainable parameter (LoRA+ speeds up ``lora_B``)."""
        return 1.0

    def regularization(self, model: torch.nn.Module) -> torch.Tensor | None:
        """A term added to each training batch's loss (AdaLoRA's orthogonality penalty), or None."""
        return None

    def after_optimizer_step(self, model: torch.nn.Module, step: int) -> None:
        """Called after each optimizer step (``step`` counts from 1), before gradients are
        cleared: AdaLoRA reallocates its ranks here."""

    def merged(self, model: torch.nn.Module) -> torch.nn.Module | None:
        """The trained model as a plain transformers model with the method's updates folded into
        its weights, for saving; None when they cannot be folded (prompts, adapters). Then the
        :meth:`base_model` is saved, the trainable weights beside it, and :meth:`build` re-applies
        the method when the model is loaded. The default suits methods that change weights in
        place and wrap nothing: the model itself."""
        return model

    def base_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The transformers model under the method's wrapper (what ``save_pretrained`` writes);
        the default: the model itself."""
        return model


class HeadPlugin(Plugin):
    """Builds the classification head: a module mapping encoder outputs to logits.

    The module is called as ``head(hidden_states, attention_mask)`` with the last hidden states
    ``(batch, seq, hidden)`` and the mask ``(batch, seq)``, and returns ``(batch, num_labels)``.
    """

    kind: ClassVar[str] = "head"

    def build(self, hidden_size: int, num_labels: int) -> torch.nn.Module:
        raise NotImplementedError


class FormulationPlugin(Plugin):
    """How (post, criterion) pairs become model inputs, and the model's outputs one logit pair per
    pair. Whatever the formulation, heads, losses, metrics, thresholds and ``criteria predict``
    see one logit pair per (post, criterion).

    :meth:`units` says what the encoder reads (a :class:`criteria.Units`: one text or text pair
    per unit, and which unit and output slot score each pair). The head plugin builds
    :meth:`head_outputs` outputs per unit; :meth:`scores` turns them into ``(units, slots, 2)``
    logits. The default reads the head's outputs as one logit pair per slot (``2 * slots``
    outputs), which suits a cross-encoder (one slot) and a multi-label encoder (one per
    criterion) alike. A formulation whose units carry ``criteria`` texts (a bi-encoder) also gets
    the head's outputs for each criterion text, encoded once per batch, and may add a trainable
    ``scorer`` module of its own (:meth:`build_scorer`).

    Evidence binding scores each sentence of a unit's post for each slot
    (:meth:`build_evidence`, :meth:`evidence_scores`); the defaults suit any formulation whose
    slots are criteria (one) or pairs."""

    kind: ClassVar[str] = "formulation"
    #: Whether a trained model can score criteria it was not trained on (their texts are inputs).
    scores_new_criteria: ClassVar[bool] = False

    def units(self, corpus: Corpus) -> Units:
        raise NotImplementedError

    def head_outputs(self, slots: int) -> int:
        """Outputs the head plugin builds per unit (``num_labels`` of its ``build``)."""
        return 2 * slots

    def build_scorer(self, head_outputs: int) -> torch.nn.Module | None:
        """A trainable module :meth:`scores` uses (trained at the head's learning rate), or None."""
        return None

    def scores(self, head_out: torch.Tensor, scorer: torch.nn.Module | None,
               criteria_out: torch.Tensor | None) -> torch.Tensor:
        """``(units, slots, 2)`` logits from the head's ``(units, head_outputs)`` output (and, when
        the units read criteria, the head's ``(criteria, head_outputs)`` output for them)."""
        return head_out.view(head_out.shape[0], -1, 2)

    def build_evidence(self, hidden_size: int, head_outputs: int, slots: int) -> torch.nn.Module:
        """The trainable module of evidence binding, which :meth:`evidence_scores` uses. The default
        scores a sentence for each output slot with one linear layer on its mean token state."""
        import torch

        return torch.nn.Linear(hidden_size, slots)

    def evidence_scores(self, sentence_states: torch.Tensor, evidence: torch.nn.Module,
                        criteria_out: torch.Tensor | None) -> torch.Tensor:
        """``(units, sentences, slots)`` evidence logits from each sentence's mean token state
        ``(units, sentences, hidden)``: how strongly the sentence shows the criterion of each slot
        (``criteria_out`` as in :meth:`scores`)."""
        return evidence(sentence_states)


class LossPlugin(Plugin):
    """Builds the training loss: a module called as ``loss(logits, labels)``.

    ``class_counts[i]`` is how many training examples have label ``i`` (from the training fold),
    for losses that weight classes.
    """

    kind: ClassVar[str] = "loss"

    def build(self, class_counts: Sequence[int]) -> torch.nn.Module:
        raise NotImplementedError


class MaskingPlugin(Plugin):
    """Chooses the tokens the continued-pretraining stage (``[pretrain]``) hides from its masked
    language model.

    :meth:`build` returns ``select(words, rng) -> chosen`` for one token sequence: ``words[i]`` is
    the index of the word token ``i`` belongs to (the tokens of a word share it, in order), or -1
    for a special token, which is never chosen; ``rng`` is a ``numpy.random.Generator``; ``chosen``
    a boolean array, True where the model must predict the token. ``probability`` is the share of
    the sequence's tokens to choose (``[pretrain] probability``). The stage then replaces 80% of
    the chosen tokens by the mask token and 10% by a random token, and keeps 10% (BERT's recipe)."""

    kind: ClassVar[str] = "masking"

    def build(self, probability: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        raise NotImplementedError


class AugmenterPlugin(Plugin):
    """Rewrites training posts into extra training examples; validation and test posts are never
    augmented, and an augmented copy is trained on only where its post is.

    Each training post gets one copy with probability :attr:`probability` (the Config's float
    ``probability`` field); the copy keeps the post's labels. :meth:`build` returns
    ``augment(post, rng) -> text | None``: ``post`` is a :class:`criteria.Post` (its sentences, and
    which of them are evidence for some criterion), ``rng`` a ``random.Random`` seeded by the
    study's seed and the post's id, so the same seed gives the same text whatever else the split
    holds; None means nothing to change (no copy). ``build`` returning None turns augmentation off.
    ``context`` (a :class:`criteria.AugmentContext`) lends what an augmenter may need from the
    model: its tokenizer, its input embeddings, a masked language model."""

    kind: ClassVar[str] = "augmenter"

    @property
    def probability(self) -> float:
        """The share of training posts that get an augmented copy (1 when the Config declares none)."""
        return float(getattr(self.config, "probability", 1.0))

    def build(self, context: AugmentContext) -> Callable[[Post, random.Random], str | None] | None:
        raise NotImplementedError


class PrunerPlugin(Plugin):
    """Builds an ``optuna.pruners.BasePruner``; chosen once per study.

    ``build`` receives the registry the study was loaded with, for pruners that wrap another
    pruner by name (``patient``); most ignore it.

    ``reports`` says what the study reports to it: the validation value of every ``"epoch"``
    (steps numbered across folds), or each ``"fold"``'s final value with the fold as the step, for
    pruners that compare trials fold by fold (Wilcoxon).

    ``multi_objective`` says whether it can serve a study with several objectives. Optuna takes no
    intermediate values in such a study, so only a pruner that never prunes can."""

    kind: ClassVar[str] = "pruner"
    reports: ClassVar[Literal["epoch", "fold"]] = "epoch"
    multi_objective: ClassVar[bool] = False

    def build(self, registry: Registry) -> optuna.pruners.BasePruner:
        raise NotImplementedError


class SamplerPlugin(Plugin):
    """Builds an ``optuna.samplers.BaseSampler``; chosen once per study.

    ``multi_objective`` says whether it can search a study with several objectives (a spec that
    names several metrics is refused before any training with a sampler that cannot)."""

    kind: ClassVar[str] = "sampler"
    multi_objective: ClassVar[bool] = False

    def build(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def space_problems(self, dimensions: Sequence[tuple[str, Any]]) -> list[str]:
        """Why this sampler cannot search a space, one message per problem (none: it can).

        ``dimensions`` are ``(name, range)`` pairs as :meth:`SearchSpace.dimensions` gives them,
        each range a :class:`criteria.plugin.ranges.FloatRange`, ``IntRange`` or ``Categorical``."""
        return []


class BackendPlugin(Plugin):
    """Builds the :class:`criteria.engine.runtime.Runtime` the engine trains on: device, mixed
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
    # The core spec section of the stage that uses this kind (masking strategies: "pretrain"), or
    # None. A trial whose stage does not run samples nothing of the kind, and logs none of it.
    stage: str | None = None

    @property
    def hook(self) -> str:
        return f"register_{self.plural}"


KINDS: tuple[Kind, ...] = (
    Kind("optimizer", "optimizers", OptimizerPlugin, "Optimizers"),
    Kind("scheduler", "schedulers", SchedulerPlugin, "LR schedulers"),
    Kind("peft", "peft_methods", PeftPlugin, "PEFT methods"),
    Kind("formulation", "formulations", FormulationPlugin, "Formulations"),
    Kind("head", "heads", HeadPlugin, "Classification heads"),
    Kind("loss", "losses", LossPlugin, "Losses"),
    Kind("augmenter", "augmenters", AugmenterPlugin, "Augmenters", searched_by_default=False),
    Kind("masking", "masking_strategies", MaskingPlugin, "Masking strategies", searched_by_default=False,
         stage="pretrain"),
    Kind("backend", "backends", BackendPlugin, "Hardware backends", searched_by_default=False),
    Kind("sampler", "samplers", SamplerPlugin, "Samplers", per_trial=False, searched_by_default=False),
    Kind("pruner", "pruners", PrunerPlugin, "Pruners", per_trial=False, searched_by_default=False),
)


def kind_named(name: str) -> Kind:
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)
