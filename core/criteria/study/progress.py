"""What a study (or a single run) tells whoever watches it, on top of each trial's training
events: the study's plan, each trial's start and end, the export after the study. Every method is
a no-op here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from criteria.engine.progress import FitProgress

__all__ = ["StudyPlan", "StudyProgress"]


@dataclass(frozen=True)
class StudyPlan:
    """What a study is about to do."""

    name: str
    trials: int | None  # trials that must finish (None: until the timeout)
    finished: int  # trials that already count (a resumed study)
    timeout_seconds: float | None
    runtime: str  # how the backend trains here, in words ("cpu, 2 threads, fp32: ...")
    data: str  # the corpus in one line


class StudyProgress(FitProgress):
    """Events of :func:`~criteria.study.runner.run_study`, around each trial's :class:`FitProgress`."""

    def run_started(self, runtime: str, data: str) -> None:
        """A single training run (``criteria train``) begins: how it trains here, on what data."""

    def study_started(self, plan: StudyPlan) -> None:
        """The study is open and its data prepared; trials are about to run."""

    def trial_started(self, number: int) -> None:
        """Trial ``number`` begins (its folds' epochs follow)."""

    def stage_finished(self, line: str) -> None:
        """A stage before training (continued pretraining, augmentation) is done; ``line`` says
        what it did."""

    def trial_finished(self, trial: Any, finished: int) -> None:
        """``trial`` (an ``optuna.trial.FrozenTrial``) ended; ``finished`` trials now count."""

    def export_started(self) -> None:
        """The study's trials are done; the best model is being exported and scored."""
