"""What a training run tells whoever watches it: epochs, optimizer steps, validation batches.

The CLI draws bars from these in a terminal and writes one plain line per epoch to a log file;
the engine itself draws nothing. Every method is a no-op here: override what you show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from criteria.engine.job import EpochReport

__all__ = ["FitProgress"]


class FitProgress:
    """Events of one :func:`~criteria.engine.fit.fit`, in the order they happen."""

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        """Training epoch ``epoch`` of at most ``epochs`` begins; it has ``steps`` optimizer steps."""

    def step_finished(self, examples: int) -> None:
        """An optimizer step over ``examples`` training examples is done."""

    def validation_started(self, batches: int) -> None:
        """Scoring the validation split begins, in ``batches`` batches."""

    def validation_step(self) -> None:
        """One validation batch is scored."""

    def epoch_finished(self, report: EpochReport) -> None:
        """The epoch is trained and validated (called before early stopping or pruning act)."""
