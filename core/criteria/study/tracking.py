"""MLflow tracking for studies: one parent run per study, one nested run per trial.

Logged with the MLflow client directly. Credentials in a storage or tracking URI are redacted
before anything reaches MLflow or the terminal; post text is never logged.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_TRACKING_FILE = "mlflow.db"
STUDY_TAG = "criteria.study"
_SECRET_QUERY = re.compile(r"(?i)((?:password|passwd|pwd|token|secret|api_key|access_key)=)[^&;]+")


def redact(url: str) -> str:
    """``scheme://user:secret@host/db?password=x`` -> ``scheme://user:***@host/db?password=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc and not _SECRET_QUERY.search(parts.query):
        return url  # nothing secret; urlunsplit would also drop the empty host of sqlite:////abs/path
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{user}:***@{host}"
    elif "@" in netloc:  # a token as the user part
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = _SECRET_QUERY.sub(r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_TRACKING_FILE}"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def hardware() -> str:
    from criteria import hardware as hw

    return f"{platform.machine()}, {os.cpu_count()} cores; {hw.describe()}"


class StudyTracker:
    """Parent run for a study (found again on resume), nested runs for its trials."""

    def __init__(self, study_name: str, tags: dict[str, str]) -> None:
        import logging

        from mlflow.tracking import MlflowClient

        # The SQLite store announces its table migrations at INFO; keep the terminal for progress.
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri = tracking_uri()
        self.client = MlflowClient(self.uri)
        experiment = self.client.get_experiment_by_name(study_name)
        self.experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(study_name)
        found = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study_name}'", max_results=1,
            order_by=["attributes.start_time ASC"],
        )
        if found:
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=study_name, tags={STUDY_TAG: study_name})
            self.parent_id = run.info.run_id
        for key, value in tags.items():
            self.client.set_tag(self.parent_id, key, value)

    @property
    def where(self) -> str:
        return redact(self.uri)

    def start_trial(self, number: int, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=f"trial-{number}",
            tags={"mlflow.parentRunId": self.parent_id, "criteria.trial": str(number), **tags},
        )
        run_id = run.info.run_id
        from mlflow.entities import Param

        self.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return run_id

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        import math

        from mlflow.entities import Metric

        stamp = _now_ms()
        batch = [Metric(k, float(v), stamp, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not math.isnan(float(v))]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def log_series(self, run_id: str, key: str, values: list[float], first_step: int = 1) -> None:
        """A curve in one call: ``values[i]`` of ``key`` at step ``first_step + i``."""
        import math

        from mlflow.entities import Metric

        stamp = _now_ms()
        batch = [Metric(key, float(v), stamp, first_step + i) for i, v in enumerate(values) if math.isfinite(v)]
        for start in range(0, len(batch), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run_id, metrics=batch[start:start + 1000])

    def set_run_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Tags on a trial's run."""
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value[:5000])

    def end_trial(self, run_id: str, state: str, reason: str = "",
                  value: float | dict[str, float] | None = None) -> None:
        """``value``: the objective, or with several objectives a value per metric name (logged
        as ``objective_<metric>``)."""
        self.client.set_tag(run_id, "criteria.state", state)
        if reason:
            self.client.set_tag(run_id, "criteria.reason", reason[:5000])
        if isinstance(value, dict):
            self.log_metrics(run_id, {f"objective_{name}": v for name, v in value.items()}, step=0)
        elif value is not None:
            self.log_metrics(run_id, {"objective": value}, step=0)
        status = {"complete": "FINISHED", "pruned": "KILLED"}.get(state, "FAILED")
        self.client.set_terminated(run_id, status=status)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.parent_id, str(path), folder)

    def log_summary(self, metrics: dict[str, float]) -> None:
        self.log_metrics(self.parent_id, metrics, step=0)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags on the study's parent run."""
        for key, value in tags.items():
            self.client.set_tag(self.parent_id, key, value[:5000])

    def finish(self, interrupted: bool = False) -> None:
        self.client.set_terminated(self.parent_id, status="KILLED" if interrupted else "FINISHED")


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
