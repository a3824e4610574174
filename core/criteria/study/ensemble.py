"""After a study with ``[study] ensemble = K``: the best K trials' kept models combined into one.

The members' probabilities are averaged (:mod:`criteria.engine.ensemble`) and the decision
threshold is tuned again, on the validation split the members were validated on, for the
study's metric (one threshold, or one per criterion when the best trial used per-criterion
thresholds): averaged probabilities are calibrated differently from any member's. The ensemble
is written to ``<output>/ensemble/`` as a run folder ``criteria predict`` loads (``model/`` with
the members inside, linked, not copied, from the kept models), scored on the held-out test posts
beside the single best model, and logged to MLflow (metrics, and an MLflow model named
``ensemble``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from criteria.data.splits import holdout, kfold
from criteria.engine.ensemble import (
    MEMBERS_FOLDER,
    average_probabilities,
    average_sentence_probabilities,
    write_ensemble_metadata,
)
from criteria.engine.evidence_metrics import evidence_metrics
from criteria.engine.inference import predict_probs
from criteria.engine.metric_names import threshold_metric
from criteria.engine.metrics import evaluate, tune_threshold, tune_thresholds
from criteria.engine.model import load_classifier
from criteria.files import write_json
from criteria.spec.load import Spec
from criteria.study.folders import KEPT_FOLDER, atomic_folder
from criteria.study.keeping import KeptModels, link_or_copy
from criteria.study.prepare import PreparedData

__all__ = ["ENSEMBLE_FOLDER", "EnsembleExport", "export_ensemble"]

ENSEMBLE_FOLDER = "ensemble"


@dataclass
class EnsembleExport:
    folder: Path | None  # None: too few kept models to combine (see notes)
    trials: list[int] = field(default_factory=list)
    threshold: Any = None
    validation: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Member:
    trial: int
    folder: Path  # the kept run folder (its model/ is what predict loads)
    model: Any
    config: Any


def validation_split(spec: Spec, data: PreparedData) -> tuple[int, ...]:
    """The validation pairs every trial's kept model was validated on: the holdout split, or the
    first fold's (the kept model of a k-fold trial is its first fold's)."""
    if spec.data.split == "kfold":
        return kfold(data.corpus, data.study_indices, spec.data.folds, spec.study.seed)[0].validation
    return holdout(data.corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed).validation


def _scores(member: _Member, data: PreparedData, runtime: Any, indices: Any) -> tuple[np.ndarray, dict]:
    """A member's probabilities of the pairs at ``indices`` and, with evidence binding, its
    sentence probabilities of those that have evidence."""
    formulation = member.config.formulation
    task = data.evidence_task(formulation) if member.model.evidence is not None else None
    collector = task.collector() if task is not None else None
    probs, _ = predict_probs(member.model.to(runtime.device), runtime, data.encode(formulation), np.asarray(indices),
                             data.corpus.labels, data.tokenizer.pad_token_id or 0,
                             member.config.train.eval_batch_size, evidence=collector)
    return probs, (collector.probs if collector is not None else {})


def _metrics(data: PreparedData, indices: Any, probs: np.ndarray, sentences: list[dict], threshold: Any) -> dict:
    labels = [data.corpus.labels[i] for i in indices]
    groups = [data.corpus.pairs[i].criterion_id for i in indices]
    metrics = evaluate(labels, probs, groups, threshold)
    if sentences:
        averaged = average_sentence_probabilities(sentences)
        found = evidence_metrics(averaged, data.evidence_gold(), {i: data.corpus.pairs[i].criterion_id for i in averaged})
        metrics["overall"].update(found["overall"])
        for group, values in found["per_group"].items():
            metrics["per_group"].setdefault(group, {}).update(values)
    return metrics


def export_ensemble(study: Any, spec: Spec, data: PreparedData, output: Path, runtime: Any) -> EnsembleExport:
    """Combine the best ``[study] ensemble`` trials' kept models, tune its threshold, score it on
    the held-out test posts and write ``output/ensemble``."""
    import optuna

    wanted = spec.study.ensemble
    kept = KeptModels(output / KEPT_FOLDER, spec.study.models_kept, spec.study.directions).best(study, wanted)
    if len(kept) < 2:
        return EnsembleExport(None, notes=[
            f"ensemble = {wanted} needs at least 2 complete trials with kept models; this study has {len(kept)}, "
            "so no ensemble was built"])
    notes = [] if len(kept) == wanted else [
        f"ensemble = {wanted}, but only {len(kept)} complete trials kept models: the ensemble combines those"]
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    members = []
    for number, folder in kept:
        model, _, _ = load_classifier(folder / "model", spec.registry)
        config = spec.space.suggest(optuna.trial.FixedTrial(trials[number].params, number=number))
        members.append(_Member(number, folder, model, config))

    validation = validation_split(spec, data)
    val_scores = [_scores(m, data, runtime, validation) for m in members]
    probs = average_probabilities([p for p, _ in val_scores])
    labels = [data.corpus.labels[i] for i in validation]
    groups = [data.corpus.pairs[i].criterion_id for i in validation]
    metric = threshold_metric(spec.study.metric)
    per_criterion = members[0].config.train.threshold_scope == "per_criterion"
    threshold = tune_thresholds(labels, probs, groups, metric) if per_criterion else tune_threshold(labels, probs, metric)
    val_metrics = _metrics(data, validation, probs, [s for _, s in val_scores if s], threshold)

    test_metrics = None
    if data.test_indices:
        test_scores = [_scores(m, data, runtime, data.test_indices) for m in members]
        test_metrics = _metrics(data, data.test_indices, average_probabilities([p for p, _ in test_scores]),
                                [s for _, s in test_scores if s], threshold)

    folder = output / ENSEMBLE_FOLDER
    with atomic_folder(folder) as partial:  # whole or not at all, like every model folder
        model_folder = partial / "model"
        names = []
        for member in members:
            name = f"{MEMBERS_FOLDER}/trial-{member.trial}"
            # hard links where the file system allows: no second copy on disk
            shutil.copytree(member.folder / "model", model_folder / name, copy_function=link_or_copy)
            names.append(name)
        write_ensemble_metadata(model_folder, names, [m.trial for m in members], threshold,
                                [vars(c) for c in data.corpus.criteria], study=spec.study.name)
        write_json(partial / "metrics.json", {
            "trials": [m.trial for m in members], "threshold": threshold, "validation": val_metrics,
            "test": test_metrics,
        }, "ensemble metrics")
    return EnsembleExport(folder, [m.trial for m in members], threshold, val_metrics, test_metrics, notes)
