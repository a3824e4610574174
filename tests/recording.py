"""Study progress listeners for tests: ``on_epoch(trial_number, epoch_report)`` for every epoch,
``on_trial(frozen_trial)`` for every trial that ends."""

from __future__ import annotations

from typing import Any, Callable

from criteria.study.progress import StudyProgress


class EpochRecorder(StudyProgress):
    def __init__(self, on_epoch: Callable[[int | None, Any], None] | None = None,
                 on_trial: Callable[[Any], None] | None = None) -> None:
        self.on_epoch = on_epoch
        self.on_trial = on_trial
        self.trial: int | None = None

    def trial_started(self, number: int) -> None:
        self.trial = number

    def epoch_finished(self, report: Any) -> None:
        if self.on_epoch:
            self.on_epoch(self.trial, report)

    def trial_finished(self, trial: Any, finished: int) -> None:
        if self.on_trial:
            self.on_trial(trial)
