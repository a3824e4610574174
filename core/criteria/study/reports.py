"""One JSON report per trial, whatever its end: configuration, every validation report of every
fold, time, hardware, versions, data hash, state and reason, and the model files kept for it.

Written to ``<output>/reports/trial-<n>.json`` and logged to the trial's MLflow run
(``report.json``). The report's shape is :class:`TrialReport`; its JSON Schema is published in
``docs/schemas/trial-report.schema.json`` (``criteria study schema`` writes it, a test checks
that it is current and that written reports follow it). A report never stops a study: one that
cannot be written is a warning.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import warnings
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from criteria import __version__
from criteria.engine.job import EpochReport
from criteria.errors import CriteriaError, CriteriaWarning
from criteria.files import strict_json, write_json
from criteria.study.tracking import hardware

__all__ = ["REPORTS_FOLDER", "REPORT_FORMAT", "SCHEMA_ID", "TrialRecord", "TrialReport", "model_dropped", "report_path",
           "report_schema"]

REPORTS_FOLDER = "reports"
REPORT_FORMAT = 1
SCHEMA_ID = "https://criteria.invalid/schemas/trial-report-1.schema.json"
#: Libraries whose versions change what a trial computes.
_PACKAGES = ("torch", "transformers", "peft", "optuna", "mlflow", "numpy", "scikit-learn")

Number = Union[float, int, None]  # a metric; None where it is undefined (NaN: one class only)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EpochEntry(_Model):
    """One validation report: an epoch's end, or a point inside it (``part`` of ``parts``)."""

    epoch: int = Field(ge=1)
    part: int = Field(ge=1, description="How far into the epoch: part of parts; parts is the epoch's end.")
    parts: int = Field(ge=1)
    value: Number = Field(description="The study's first metric at this report (what early stopping tracks).")
    train_loss: Number
    seconds: float = Field(ge=0, description="Since the epoch started.")
    train_samples_per_second: Number
    threshold: Union[float, dict[str, float]] = Field(
        description="The decision threshold the metrics use: one, or one per criterion id.")
    metrics: dict[str, Number] = Field(description="Overall validation metrics (criteria and evidence binding).")
    per_criterion: dict[str, dict[str, Number]] = Field(description="Validation metrics per criterion id.")


class FoldEntry(_Model):
    fold: int = Field(ge=0)
    split: str = Field(description="holdout, or fold-<k> in k-fold cross-validation.")
    reports: list[EpochEntry]
    value: Union[Number, list[Number]] = Field(
        None, description="The fold's objective (one per metric in a multi-objective study); None if unfinished.")


class Timing(_Model):
    started: str = Field(description="UTC, ISO 8601.")
    finished: str
    seconds: float = Field(ge=0)


class Hardware(_Model):
    machine: str = Field(description="Architecture, cores and accelerators.")
    runtime: Union[str, None] = Field(description="How the backend trained (device, threads, precision); None "
                                                  "when the trial ended before building it.")


class PluginVersion(_Model):
    name: str
    distribution: str
    version: str


class Versions(_Model):
    python: str
    criteria: str
    packages: dict[str, Union[str, None]] = Field(description="Installed versions; None: not installed.")
    plugins: dict[str, PluginVersion] = Field(description="The trial's plugin of each kind.")


class DataEntry(_Model):
    sha256: str = Field(description="SHA-256 of the corpus: posts, criteria and labels.")
    source: str
    pairs: int = Field(ge=0)
    test_pairs: int = Field(ge=0, description="Held out from the whole study.")


class ModelFiles(_Model):
    kept: bool = Field(description="Whether this trial's model files are kept (the study's best K trials).")
    folder: Union[str, None] = None
    bytes: Union[int, None] = Field(None, ge=0)
    not_kept: Union[str, None] = Field(None, description="Why a model that should have been kept was not "
                                                          "(a full disk); the export then retrains it.")


class TrialReport(_Model):
    """What one trial did, whatever its end."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"$id": SCHEMA_ID})

    format: Literal[1] = Field(description="The report format; a new one gets a new schema.")
    study: str
    trial: int = Field(ge=0)
    state: Literal["complete", "pruned", "failed", "interrupted"]
    reason: Union[str, None] = Field(description="Why it was pruned, failed or interrupted; None when complete.")
    values: Union[dict[str, Number], None] = Field(
        description="The objective per metric name, for a complete trial; else None.")
    params: dict[str, Any] = Field(description="The parameters Optuna sampled (names as `criteria space` shows).")
    configuration: dict[str, Any] = Field(description="The whole resolved configuration: every [train] knob and "
                                                      "each plugin with its config, flat and namespaced.")
    seed: int
    folds: list[FoldEntry]
    time: Timing
    hardware: Hardware
    versions: Versions
    data: DataEntry
    model: ModelFiles
    mlflow_run_id: Union[str, None] = None


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :class:`TrialReport`."""
    schema = TrialReport.model_json_schema(mode="serialization")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def report_path(folder: Path, trial: int) -> Path:
    return folder / f"trial-{trial}.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in _PACKAGES:
        try:
            found[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            found[package] = None
    return found


class TrialRecord:
    """Collects one trial's report as it runs (:meth:`configure`, :meth:`epoch`, :meth:`fold`),
    then :meth:`finish` writes it."""

    def __init__(self, study: str, trial: int, seed: int, data: Any) -> None:
        corpus = data.corpus
        self.study, self.trial, self.seed = study, trial, seed
        self.started, self.clock = _now(), time.perf_counter()
        self.params: dict[str, Any] = {}
        self.configuration: dict[str, Any] = {}
        self.plugins: dict[str, PluginVersion] = {}
        self.runtime: str | None = None
        self.folds: list[FoldEntry] = []
        self.machine = hardware()
        self.data = DataEntry(sha256=corpus.sha256, source=corpus.source, pairs=len(corpus.pairs),
                              test_pairs=len(data.test_indices))
        self.model = ModelFiles(kept=False)
        self.mlflow_run_id: str | None = None
        self.values: dict[str, float] | None = None  # the objective per metric, once complete

    def configure(self, params: dict[str, Any], config: Any, registry: Any) -> None:
        """The trial's sampled parameters and resolved configuration (a TrialConfig)."""
        self.params = dict(params)
        self.configuration = config.params()
        for kind, plugin in config.plugins.items():
            info = registry.plugins(kind).get(plugin.name)
            self.plugins[kind] = PluginVersion(name=plugin.name, distribution=info.distribution if info else "unregistered",
                                               version=info.version if info else "")

    def fold(self, fold: int, split: str) -> None:
        """A fold starts (its reports follow)."""
        self.folds.append(FoldEntry(fold=fold, split=split, reports=[]))

    def epoch(self, report: EpochReport) -> None:
        """A validation report of the current fold."""
        metrics = report.metrics
        self.folds[-1].reports.append(EpochEntry(
            epoch=report.epoch, part=report.part, parts=report.parts, value=report.value,
            train_loss=report.train_loss, seconds=report.seconds,
            train_samples_per_second=report.train_samples_per_second, threshold=report.threshold,
            metrics={k: v for k, v in metrics["overall"].items() if isinstance(v, (int, float))},
            per_criterion={group: {k: v for k, v in values.items() if isinstance(v, (int, float))}
                           for group, values in metrics.get("per_group", {}).items()},
        ))

    def fold_value(self, value: Any) -> None:
        self.folds[-1].value = value

    def kept(self, folder: Path | None) -> None:
        """Where the trial's model is kept (None: it is not among the study's best)."""
        self.model = ModelFiles(kept=True, folder=str(folder), bytes=folder_bytes(folder)) if folder is not None \
            else ModelFiles(kept=False)

    def model_not_kept(self, reason: str) -> None:
        """The trial's model should have been kept but could not be written (``reason``)."""
        self.model = ModelFiles(kept=False, not_kept=reason)

    def finish(self, state: str, reason: str | None) -> TrialReport:
        """The report of the trial, ended in ``state`` (with ``reason``); the objective values only
        when it is complete."""
        finished = _now()
        values = self.values if state == "complete" else None
        return TrialReport(
            format=REPORT_FORMAT, study=self.study, trial=self.trial, state=state, reason=reason, values=values,
            params=self.params, configuration=self.configuration, seed=self.seed, folds=self.folds,
            time=Timing(started=self.started, finished=finished, seconds=time.perf_counter() - self.clock),
            hardware=Hardware(machine=self.machine, runtime=self.runtime),
            versions=Versions(python=platform.python_version() or sys.version.split()[0], criteria=__version__,
                              packages=_package_versions(), plugins=self.plugins),
            data=self.data, model=self.model, mlflow_run_id=self.mlflow_run_id,
        )


def folder_bytes(folder: Path) -> int:
    """Bytes the files under ``folder`` take (a file hard-linked twice counts once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def model_dropped(folder: Path | None, trial: int) -> None:
    """Say in trial ``trial``'s report (in ``folder``) that its model is no longer kept: a later
    trial pushed it out of the best K. The copy in MLflow stays as the trial left it."""
    if folder is None:
        return
    path = report_path(folder, trial)
    try:
        data = json.loads(path.read_text())
        data["model"] = ModelFiles(kept=False).model_dump(mode="json")
        write_json(path, data, "trial report")
    except (CriteriaError, OSError, ValueError) as exc:
        warnings.warn(f"the report of trial {trial} still says its model is kept: {exc}", CriteriaWarning,
                      stacklevel=2)


def write_report(report: TrialReport, folder: Path | None, tracker: Any = None) -> Path | None:
    """Write ``report`` to ``folder`` (when given) and log it to its MLflow run (when tracked);
    a failure to write is a warning, never the end of the study."""
    path = None
    data = strict_json(report.model_dump(mode="json"))
    try:
        if folder is not None:
            path = write_json(report_path(folder, report.trial), data, "trial report")
        if tracker is not None and report.mlflow_run_id:
            tracker.log_run_dict(report.mlflow_run_id, data, "report.json")
    except (CriteriaError, OSError) as exc:
        warnings.warn(f"the report of trial {report.trial} was not written: {exc}", CriteriaWarning, stacklevel=2)
    return path
