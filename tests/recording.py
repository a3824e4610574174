"""A study progress listener for tests: ``on_epoch(trial_number, epoch_report)`` for every epoch."""

from __future__ import annotations

from typing import Any, Callable

from criteria.study.progress import StudyProgress


class EpochRecorder(StudyProgress):
    def __init__(self, on_epoch: Callable[[int | None, Any], None]) -> None:
        self.on_epoch = on_epoch
        self.trial: int | None = None

    def trial_started(self, number: int) -> None:
        self.trial = number

    def epoch_finished(self, report: Any) -> None:
        self.on_epoch(self.trial, report)
