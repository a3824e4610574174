"""What a training run is given (:class:`TrainingJob`) and what it gives back (:class:`FitResult`,
one :class:`EpochReport` per epoch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from criteria.data.corpus import Corpus
from criteria.data.tokens import EncodedPairs
from criteria.engine.config import TrialConfig
from criteria.errors import CriteriaError

if TYPE_CHECKING:  # pragma: no cover
    from criteria.engine.evidence import EvidenceTask
    from criteria.engine.model import CriterionClassifier
    from criteria.engine.runtime import Runtime

__all__ = ["EpochReport", "FitResult", "TrainingDiverged", "TrainingJob", "check_trainable"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the configuration cannot train."""


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float
    metrics: dict[str, Any]  # criteria.engine.metrics.evaluate() of the validation split
    value: float  # the objective metric
    seconds: float
    train_samples_per_second: float  # units (what the encoder reads) per second
    # the decision threshold the metrics use (tuned on validation, if asked): one, or one per criterion
    threshold: float | dict[str, float] = 0.5
    part: int = 1  # how far into the epoch this report is: part of parts (the epoch's end is parts)
    parts: int = 1


@dataclass
class FitResult:
    model: CriterionClassifier
    history: list[EpochReport]
    best_epoch: int
    threshold: float | dict[str, float]
    validation_probs: np.ndarray
    stopped_early: bool = False

    @property
    def best(self) -> EpochReport:
        return self.history[self.best_epoch - 1]


@dataclass
class TrainingJob:
    """Everything one training run needs. ``runtime`` is the backend's, built once by the caller
    for every fold and evaluation of a run (None: :func:`~criteria.engine.fit.fit` builds it)."""

    corpus: Corpus
    encoded: EncodedPairs
    train_indices: Sequence[int]
    validation_indices: Sequence[int]
    config: TrialConfig
    model_name: str | None
    pad_token_id: int
    mask_token_id: int | None = None  # what token dropout writes; None disables it
    special_token_ids: tuple[int, ...] = ()  # never dropped
    metric: str = "macro_f1"
    direction: str = "maximize"
    seed: int = 42
    tune_threshold: bool = False
    callbacks: list[Callable[[EpochReport], None]] = field(default_factory=list)
    runtime: Runtime | None = None
    reports_per_epoch: int = 1  # validation reports to the callbacks per epoch (pruning inside epochs)
    evidence: EvidenceTask | None = None  # evidence binding, trained beside criteria matching (None: off)
    # What continued pretraining did to make model_name (a criteria.engine.pretraining.AdaptedEncoder),
    # for reports; None when the model is trained as named.
    pretrained: Any = None


def check_trainable(job: TrainingJob) -> None:
    """Fail before any work when a split cannot train (a class missing from the training data)."""
    labels = job.corpus.labels
    present = {labels[i] for i in job.train_indices}
    if present != {0, 1}:
        raise CriteriaError(
            f"the training split has only label(s) {sorted(present)}; it needs both met and not-met "
            "examples. Use more data or a smaller validation/test fraction."
        )
