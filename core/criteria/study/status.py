"""Where a study stands, read from its storage without writing to it: ``criteria study status``.

Works from any machine that reaches the storage: trials per state, the trials running now with
their worker and the age of its last heartbeat, failures with their reasons, the best so far.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from criteria.errors import CriteriaError
from criteria.spec.load import Spec
from criteria.study.runner import StudySummary, summarize
from criteria.study.storage import heartbeat_ages, load_study
from criteria.study.tracking import PARENT_RUN_ATTR, redact, tracking_uri
from criteria.study.workers import worker_label

__all__ = ["RunningTrial", "StudyStatus", "describe_age", "study_status"]


@dataclass(frozen=True)
class RunningTrial:
    number: int
    worker: str  # "w1 host:pid", or "-" before its worker recorded itself
    started: datetime | None
    heartbeat_age: float | None  # seconds, by the database's clock; None: no heartbeat yet
    lost: bool  # heartbeat older than grace_seconds: the next worker that looks fails and retries it


@dataclass(frozen=True)
class StudyStatus:
    summary: StudySummary
    running: list[RunningTrial]
    grace_seconds: int
    tracking: str  # redacted
    parent_run: str | None  # the MLflow parent run's id


def study_status(spec: Spec) -> StudyStatus:
    """The spec's study as its storage has it, opened read-only."""
    from optuna.trial import TrialState

    study = load_study(spec, create=False, read_only=True)
    summary = summarize(study, spec, 0.0, False, None)
    ages = heartbeat_ages(study)
    grace = spec.study.grace_seconds
    running = [
        RunningTrial(t.number, worker_label(t), t.datetime_start, ages.get(t.number),
                     ages.get(t.number) is not None and ages[t.number] > grace)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    ]
    tracking = _tracking(spec)
    return StudyStatus(replace(summary, tracking=tracking), running, grace, tracking,
                       study.user_attrs.get(PARENT_RUN_ATTR))


def _tracking(spec: Spec) -> str:
    try:
        return redact(tracking_uri(spec.study.tracking_uri))
    except CriteriaError as exc:  # an env: variable not set on this machine
        return f"unknown here ({exc})"


def describe_age(seconds: float | None) -> str:
    if seconds is None:
        return "none yet"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago"
