"""One training run from a spec (``criteria train``): data, split, engine, evaluation against the
baseline, and a run folder that ``criteria predict`` loads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from criteria import __version__
from criteria.data.splits import holdout
from criteria.engine.config import TrialConfig
from criteria.engine.fit import fit
from criteria.engine.job import FitResult
from criteria.engine.model import NUM_LABELS, save_classifier
from criteria.engine.model_source import base_reference
from criteria.files import write_json
from criteria.spec.load import Spec
from criteria.study.prepare import PreparedData, baseline_metrics, evaluate_indices, make_job, prepare_data
from criteria.study.progress import StudyProgress
from criteria.study.urls import redact

__all__ = ["RunResult", "save_run_model", "train_from_spec", "write_resolved_spec"]

#: [study] keys that hold URLs, which may carry a password.
_URL_KEYS = ("storage", "tracking_uri")


@dataclass
class RunResult:
    folder: Path
    fit: FitResult
    validation: dict[str, Any]
    test: dict[str, Any] | None
    baseline_test: dict[str, Any] | None
    seconds: float


def train_from_spec(spec: Spec, output: Path, *, progress: StudyProgress | None = None,
                    baseline: bool = True) -> RunResult:
    """Train the spec's single configuration (frozen values, else defaults) and write a run folder."""
    start = time.perf_counter()
    data = prepare_data(spec)
    config = spec.space.default()
    runtime = config.backend.build()
    if progress:
        progress.run_started(runtime.describe(), data.corpus.summary())
    split = holdout(data.corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed)
    job = make_job(spec, data, config, split.train, split.validation, runtime=runtime,
                   announce=progress.stage_finished if progress else None)
    result = fit(job, progress=progress)
    validation = result.best.metrics
    validation["threshold"] = result.threshold
    test = baseline_test = None
    if data.test_indices:
        test, _, _ = evaluate_indices(result.model, data, config, runtime, data.test_indices, result.threshold)
        if baseline:
            baseline_test = baseline_metrics(data.corpus, data.study_indices, data.test_indices, spec.study.seed)

    folder = output
    save_run_model(result, data, spec, config, folder)
    seconds = time.perf_counter() - start
    write_json(folder / "metrics.json", {
        "validation": validation, "test": test, "baseline_test": baseline_test,
        "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "history": [{"epoch": r.epoch, "train_loss": r.train_loss, "value": r.value,
                     "seconds": r.seconds, "train_samples_per_second": r.train_samples_per_second,
                     "overall": r.metrics["overall"]} for r in result.history],
        "seconds": seconds, "data_sha256": data.corpus.sha256,
        "pretraining": job.pretrained.record if job.pretrained is not None else None,
    }, "run metrics")
    return RunResult(folder, result, validation, test, baseline_test, seconds)


def save_run_model(result: FitResult, data: PreparedData, spec: Spec, config: TrialConfig, folder: Path,
                   **metadata: Any) -> None:
    """Write ``folder/model`` (what ``criteria predict`` loads) and ``folder/spec.resolved.json``."""
    save_classifier(result.model, data.tokenizer, folder / "model", {
        "head": {"name": config.head.name, "config": config.head.config.model_dump()},
        "formulation": {"name": config.formulation.name, "config": config.formulation.config.model_dump()},
        "criteria": [vars(c) for c in data.corpus.criteria],
        "max_length": spec.data.max_length,
        "threshold": result.threshold,
        "num_labels": NUM_LABELS,
        "criteria_version": __version__,
        **metadata,
    }, peft=config.peft, base=base_reference(spec.model.name))
    write_resolved_spec(spec, config, folder / "spec.resolved.json")


def write_resolved_spec(spec: Spec, config: TrialConfig, path: Path) -> None:
    """The spec as written and as resolved for ``config``, with credentials in URLs redacted."""
    raw_study = {**spec.raw.get("study", {})}
    study = spec.study.model_dump()
    for key in _URL_KEYS:
        for table in (raw_study, study):
            if isinstance(table.get(key), str):
                table[key] = redact(table[key])
    write_json(path, {
        "spec_file": str(spec.path),
        "spec": {**spec.raw, "study": raw_study} if "study" in spec.raw else spec.raw,
        "resolved": config.params(),
        "study": study,
        "data": spec.data.model_dump(),
        "model": spec.model.model_dump(),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, "resolved spec")
