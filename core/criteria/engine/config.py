"""What one training run is configured with: the core knobs every trial shares
(:class:`TrainConfig`, a spec's ``[train]`` section), the continued-pretraining stage before it
(:class:`PretrainConfig`, ``[pretrain]``), and one plugin per per-trial kind (:class:`TrialConfig`,
one point of a study's search space)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import ConfigDict, Field

from criteria.plugin.base import Plugin, StrictModel
from criteria.plugin.fields import BoolParam, ChoiceParam, FloatParam, IntParam
from criteria.plugin.kinds import (
    KINDS,
    AugmenterPlugin,
    BackendPlugin,
    FormulationPlugin,
    HeadPlugin,
    LossPlugin,
    MaskingPlugin,
    OptimizerPlugin,
    PeftPlugin,
    SchedulerPlugin,
    kind_named,
)
from criteria.plugin.ranges import choice_label

__all__ = ["PretrainConfig", "TrainConfig", "TrialConfig"]


class TrainConfig(StrictModel):
    """Knobs shared by every trial whatever its plugins (epochs, batches, dropout, freezing, ...).
    Fixed at their defaults unless the spec gives a value or a range."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    epochs: int = IntParam(3, ge=1, le=100, search=(2, 6), description="Maximum epochs per trial.")
    batch_size: int = ChoiceParam(16, search=(8, 16, 32), description="Examples per forward pass.")
    effective_batch_size: int | None = Field(
        None, ge=1, description="Target batch per optimizer step, reached by gradient accumulation."
    )
    eval_batch_size: int = Field(64, ge=1)
    hidden_dropout: float = FloatParam(0.1, ge=0.0, le=0.9, search=(0.0, 0.3))
    attention_dropout: float = FloatParam(0.1, ge=0.0, le=0.9, search=(0.0, 0.3))
    max_grad_norm: float = ChoiceParam(1.0, search=(0.0, 1.0, 2.0, 5.0), description="0 disables clipping.")
    evidence_sentences: bool = BoolParam(
        True, description="Also train on the training posts' evidence sentences (ReDSM5 annotations), each "
                          "paired with the criteria it shows (met) and data.evidence_negatives others (not met).",
    )
    criteria_loss_weight: float = FloatParam(
        1.0, gt=0.0, le=10.0, search=(0.5, 2.0), log=True,
        description="lambda_class: the weight of the criteria-matching loss beside evidence binding's "
                    "(loss = lambda_class * L_criteria + lambda_span * L_evidence).",
    )
    evidence_loss_weight: float = FloatParam(
        0.0, ge=0.0, le=10.0, search=(0.1, 2.0), log=True,
        description="lambda_span: the weight of evidence binding (each sentence of a post scored against a "
                    "criterion, learned from the sentence annotations); 0 (the default) leaves it off, 0.5 is a "
                    "good start. Data without sentence evidence trains without it.",
    )
    token_dropout: float = FloatParam(
        0.0, ge=0.0, le=0.5, search=(0.0, 0.2),
        description="Share of post and criterion tokens replaced by the mask token while training.",
    )
    warmup_ratio: float = FloatParam(0.06, ge=0.0, le=0.5, search=(0.0, 0.2), description="Warmup as a share of all steps.")
    warmup_steps: int = ChoiceParam(
        0, search=(0, 500, 1000, 2000), ge=0,
        description="Warmup in optimizer steps; overrides warmup_ratio when above 0 (capped at the run's steps).",
    )
    freeze_layers: int = ChoiceParam(
        0, search=(0, 2, 6), ge=0, le=48,
        description="Freeze the embeddings and the bottom N of 12 layers, scaled to the model's depth (6 layers: N/2).",
    )
    freeze_encoder: bool = BoolParam(False, description="Freeze the whole encoder: train the head only.")
    unfreeze_layernorm: bool = BoolParam(
        False, description="Train LayerNorms even where the PEFT method or freezing froze them.",
    )
    unfreeze_pooler: bool = BoolParam(False, description="Train the encoder's pooler (heads that read it).")
    head_lr_multiplier: float = FloatParam(1.0, ge=0.1, le=100.0, search=(1.0, 20.0), log=True)
    layerwise_lr_decay: float = FloatParam(1.0, ge=0.5, le=1.0, search=(0.75, 0.95), description="1 is off.")
    tune_threshold: bool = Field(False, description="Tune the decision threshold on the validation split.")
    threshold_scope: Literal["global", "per_criterion"] = Field(
        "global", description="With tune_threshold: one threshold for all criteria, or one per criterion "
                              "(a criterion with a single class in validation keeps the global one).",
    )
    frozen_cache: bool = Field(
        True, description="Compute frozen bottom layers once and reuse their output (frozen layers then run "
                          "without dropout); applies when layers are frozen and nothing random acts below them.",
    )
    deterministic: bool = Field(
        False, description="Bit-stable runs: deterministic torch algorithms, every seed set, one CPU thread "
                           "(slower: see docs/study.md, Reproducing a trial).",
    )
    patience: int = Field(2, ge=0, description="Epochs without improvement before stopping (0: never).")
    min_delta: float = Field(0.0, ge=0.0)


class PretrainConfig(StrictModel):
    """Continued pretraining before fine-tuning: a masked-language-model stage on a domain corpus
    (DAPT, ``corpus``) and/or the split's training posts (TAPT, ``tapt``), never on validation or
    test posts. The adapted encoder is cached per (model, texts, these settings, masking strategy):
    trials that share them pretrain once. A ``[masking]`` section chooses the strategy."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    corpus: Path | None = Field(
        None, description="DAPT: a text file (one document per line) or a CSV file (one per row, in text_column), "
                          "relative to the spec file.",
    )
    text_column: str = Field("text", min_length=1, description="The column of a CSV corpus that holds the text.")
    tapt: bool = BoolParam(
        True, description="TAPT: also pretrain on the current split's training posts (never validation or test posts).",
    )
    epochs: int = IntParam(1, ge=0, le=100, search=(1, 3), description="Passes over the texts; 0 skips the stage.")
    probability: float = FloatParam(
        0.15, ge=0.01, le=0.8, search=(0.1, 0.3), description="Share of tokens the masking strategy hides.",
    )
    lr: float = FloatParam(1e-4, ge=1e-7, le=1e-2, search=(3e-5, 5e-4), log=True,
                           description="AdamW learning rate (linear decay after warmup).")
    batch_size: int = ChoiceParam(16, search=(8, 16, 32), ge=1, le=4096, description="Sequences per step.")
    max_length: int = Field(128, ge=16, le=8192, description="Tokens per sequence; longer texts are cut into "
                                                             "windows, none is truncated.")
    warmup_ratio: float = Field(0.06, ge=0.0, le=0.5, description="Warmup as a share of all steps.")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0)

    @property
    def runs(self) -> bool:
        """Whether the stage does anything: some epochs, on some texts."""
        return self.epochs > 0 and (self.corpus is not None or self.tapt)


@dataclass(frozen=True)
class TrialConfig:
    """One configuration to train: the core knobs and one plugin per per-trial kind, keyed by
    kind name. The engine reads the typed accessors (``config.optimizer``, ...). ``pretrain``
    holds the continued-pretraining settings when the spec has a ``[pretrain]`` section."""

    train: TrainConfig
    plugins: Mapping[str, Plugin] = field(default_factory=dict)
    pretrain: PretrainConfig | None = None

    def __post_init__(self) -> None:
        wanted = {kind.name: kind.base for kind in KINDS if kind.per_trial}
        missing = sorted(set(wanted) - set(self.plugins))
        if missing:
            raise ValueError(f"a trial configuration needs a plugin of each kind; missing: {', '.join(missing)}")
        for name, plugin in self.plugins.items():
            base = wanted.get(name)
            if base is None or not isinstance(plugin, base):
                raise TypeError(f"plugins[{name!r}] must be a per-trial kind's plugin, got {plugin!r}")

    @property
    def optimizer(self) -> OptimizerPlugin:
        return self.plugins["optimizer"]  # type: ignore[return-value]

    @property
    def scheduler(self) -> SchedulerPlugin:
        return self.plugins["scheduler"]  # type: ignore[return-value]

    @property
    def peft(self) -> PeftPlugin:
        return self.plugins["peft"]  # type: ignore[return-value]

    @property
    def formulation(self) -> FormulationPlugin:
        return self.plugins["formulation"]  # type: ignore[return-value]

    @property
    def head(self) -> HeadPlugin:
        return self.plugins["head"]  # type: ignore[return-value]

    @property
    def loss(self) -> LossPlugin:
        return self.plugins["loss"]  # type: ignore[return-value]

    @property
    def backend(self) -> BackendPlugin:
        return self.plugins["backend"]  # type: ignore[return-value]

    @property
    def augmenter(self) -> AugmenterPlugin:
        return self.plugins["augmenter"]  # type: ignore[return-value]

    @property
    def masking(self) -> MaskingPlugin:
        return self.plugins["masking"]  # type: ignore[return-value]

    @property
    def pretraining(self) -> PretrainConfig | None:
        """The continued-pretraining settings when this configuration runs the stage, else None."""
        return self.pretrain if self.pretrain is not None and self.pretrain.runs else None

    def stage_runs(self, stage: str | None) -> bool:
        """Whether the stage of a core section (a kind's ``stage``) runs here; True for None."""
        runs = {"pretrain": self.pretraining is not None}
        return stage is None or runs[stage]

    def params(self) -> dict[str, Any]:
        """A flat, namespaced view for logging (``optimizer``, ``optimizer.lion.lr``, ...); the
        plugins of a stage that does not run are left out."""
        flat: dict[str, Any] = {f"train.{k}": v for k, v in self.train.model_dump().items()}
        if self.pretrain is not None:
            flat.update({f"pretrain.{k}": v for k, v in self.pretrain.model_dump().items()})
        for kind, plugin in self.plugins.items():
            if not self.stage_runs(kind_named(kind).stage):
                continue
            flat[kind] = plugin.name
            for key, value in plugin.config.model_dump().items():
                flat[f"{kind}.{plugin.name}.{key}"] = choice_label(value)
        return flat
