"""MLflow tracking for studies: one parent run per study, one nested run per trial.

Logged with the MLflow client directly, to a local SQLite store by default or to any tracking
URI (an MLflow tracking server for many workers). Every worker's trial runs nest under the one
parent run of the study, tagged with the worker's host and index. Credentials in a storage or
tracking URI are redacted before anything reaches MLflow or the terminal; post text is never
logged.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from criteria.errors import CriteriaError
from criteria.study.urls import redact, resolve_url, scrub, with_default_driver
from criteria.study.workers import WORKER_ATTR

__all__ = ["DEFAULT_TRACKING_FILE", "MLFLOW_RUN_ATTR", "PARENT_RUN_ATTR", "STUDY_TAG", "StudyTracker", "git_commit",
           "hardware", "redact", "tracking_uri"]

DEFAULT_TRACKING_FILE = "mlflow.db"
STUDY_TAG = "criteria.study"
#: The trial user attribute holding the id of the trial's MLflow run.
MLFLOW_RUN_ATTR = "criteria.mlflow_run"
#: The study user attribute holding the id of the study's MLflow parent run.
PARENT_RUN_ATTR = "criteria.mlflow_parent_run"


def tracking_uri(given: str | None = None) -> str:
    """``[study] tracking_uri`` (``env:NAME`` read from the environment), else
    ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the working directory. A PostgreSQL backend
    store uses psycopg 3, like the study storage."""
    if given:
        return with_default_driver(resolve_url(given, "tracking_uri"))
    return with_default_driver(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DEFAULT_TRACKING_FILE}")


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
    """Parent run for a study, nested runs for its trials.

    The parent run lives in an experiment named after the study. ``parent_id`` names it (every
    worker reads it from the study); without one a new parent run is made, unless ``find`` asks
    to look for the study's earlier one by its tag (a study tracked before it kept the id).
    """

    def __init__(self, study_name: str, tags: dict[str, str], uri: str | None = None, running: bool = True,
                 parent_id: str | None = None, find: bool = False) -> None:
        """``running``: mark the parent run running (a worker starts); False leaves its state."""
        import logging

        import mlflow  # noqa: F401  (it sets its loggers' levels on import: quieten them after)

        # The SQLite store announces its table migrations at INFO, and artifact transfers draw bars
        # of their own: keep the terminal (and log files) for criteria's progress.
        for name in ("alembic", "mlflow"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.uri = uri or tracking_uri()
        self.study_name = study_name
        self.client = _client(self.uri)
        self.experiment_id = self._experiment(study_name)
        self.parent_id = self._parent_run(parent_id, find)
        if running:
            self.client.update_run(self.parent_id, status="RUNNING")
        for key, value in tags.items():
            self.client.set_tag(self.parent_id, key, value)

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:  # another worker created it a moment ago
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _parent_run(self, parent_id: str | None, find: bool) -> str:
        from mlflow.exceptions import MlflowException

        if parent_id is not None:
            try:
                if self.client.get_run(parent_id).info.lifecycle_stage == "active":
                    return parent_id
            except MlflowException:  # not in this tracking store (deleted, or another store)
                pass
        if find:
            found = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{self.study_name}'", max_results=1,
                order_by=["attributes.start_time ASC"],
            )
            if found:
                return found[0].info.run_id
        run = self.client.create_run(self.experiment_id, run_name=self.study_name, tags={STUDY_TAG: self.study_name})
        return run.info.run_id

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

    def log_run_dict(self, run_id: str, data: dict[str, Any], name: str) -> None:
        """``data`` as the JSON artifact ``name`` of run ``run_id`` (a trial's report)."""
        self.client.log_dict(run_id, data, name)

    def log_summary(self, metrics: dict[str, float]) -> None:
        self.log_metrics(self.parent_id, metrics, step=0)

    def tag_run(self, run_id: str | None, tags: dict[str, str]) -> None:
        """Tags on a trial's run (none without one)."""
        if run_id:
            for key, value in tags.items():
                self.client.set_tag(run_id, key, value[:5000])

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags on the study's parent run."""
        for key, value in tags.items():
            self.client.set_tag(self.parent_id, key, value[:5000])

    def close_lost_trial(self, trial: Any) -> None:
        """End the MLflow run of a trial whose worker was lost (it is being run again)."""
        run_id = trial.user_attrs.get(MLFLOW_RUN_ATTR)
        if run_id:
            worker = trial.user_attrs.get(WORKER_ATTR) or {}
            where = f" (worker w{worker.get('index')} on {worker.get('host')})" if worker else ""
            self.end_trial(run_id, "lost", f"its worker stopped{where}; the trial is queued to run again")

    def finish(self, interrupted: bool = False, failed: bool = False) -> None:
        status = "KILLED" if interrupted else "FAILED" if failed else "FINISHED"
        self.client.set_terminated(self.parent_id, status=status)


def _client(uri: str) -> Any:
    """An MLflow client whose store is ready. Workers opening a new database-backed store at once
    each migrate its schema, and all but one fail half-way, each in its own words ("duplicate
    column", "no such index", ...); the schema is complete a moment later, so opening again
    succeeds. A tracking server migrates for its clients (and MLflow retries HTTP itself)."""
    from mlflow.tracking import MlflowClient

    attempts = 1 if uri.split(":", 1)[0] in ("http", "https", "databricks") else 5
    attempt = 0
    while True:
        try:
            client = MlflowClient(uri)  # a database-backed store migrates its schema here
            client.search_experiments(max_results=1)
            return client
        except Exception as exc:
            attempt += 1
            # A store that cannot be reached is not racing anyone (MLflow has retried already).
            if attempt == attempts or "connect" in str(exc).lower():
                detail = scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0][:300], uri)
                raise CriteriaError(
                    f"cannot open the MLflow tracking store {redact(uri)}: {detail}; check [study] tracking_uri "
                    "or MLFLOW_TRACKING_URI, or run with --no-track"
                ) from None
            time.sleep(attempt)


def _now_ms() -> int:
    return int(time.time() * 1000)
