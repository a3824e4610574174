"""Scoring posts against every criterion with a saved model folder: ``criteria predict`` and the
MLflow model share :func:`score_posts`."""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from criteria.data.corpus import Corpus, Criterion, Pair
from criteria.data.loaders import load_criteria_json, load_posts
from criteria.data.tokens import encode_texts, encode_units
from criteria.data.units import pair_units
from criteria.engine.inference import predict_probs
from criteria.engine.model import criteria_tensors, load_classifier
from criteria.engine.runtime import Runtime
from criteria.engine.thresholds import thresholds_of
from criteria.errors import CriteriaError
from criteria.files import atomic_output, check_output_file
from criteria.plugin.registry import Registry


def default_runtime(registry: Registry) -> Runtime:
    """The best backend available here (highest priority), with its defaults."""
    backends = [info for info in registry.plugins("backend").values() if info.availability()]
    best = max(backends, key=lambda info: info.cls.priority)
    return best.cls().build()


@dataclass(frozen=True)
class Prediction:
    """One post scored against one criterion."""

    post_id: str
    criterion_id: str
    criterion: str
    probability: float
    met: int


#: The columns of a prediction table, in order (``criteria predict``'s CSV, the MLflow model's output).
PREDICTION_COLUMNS = tuple(field.name for field in fields(Prediction))


def score_posts(model: Any, tokenizer: Any, metadata: dict[str, Any], posts: dict[str, str], runtime: Runtime, *,
                batch_size: int = 64, source: str = "posts", criteria: Sequence[Criterion] | None = None,
                ) -> list[Prediction]:
    """Every post in ``posts`` (post_id -> text) against every criterion the model was trained on,
    at the model's decision thresholds (one, or one per criterion). ``criteria`` scores other
    criteria where the model's formulation reads criterion texts (a bi-encoder); they are judged
    at one threshold, the median of the model's own."""
    own = tuple(Criterion(**c) for c in metadata["criteria"])
    threshold = metadata.get("threshold", 0.5)
    if criteria is not None:
        formulation = model.formulation
        if formulation is None or not formulation.scores_new_criteria:
            name = formulation.name if formulation is not None else "pair"
            raise CriteriaError(
                f"this model ({name} formulation) scores only the criteria it was trained on "
                f"({', '.join(c.id for c in own)}); drop --criteria, or train a formulation that reads "
                "criterion texts (biencoder)")
        model.set_criteria(criteria_tensors(encode_texts(tokenizer, [c.text for c in criteria], metadata["max_length"]),
                                            tokenizer.pad_token_id or 0))
        threshold = float(np.median(list(threshold.values()))) if isinstance(threshold, dict) else float(threshold)
    chosen = tuple(criteria) if criteria is not None else own
    pairs = tuple(Pair(post_id, c.id, 0) for post_id in posts for c in chosen)
    corpus = Corpus(posts, chosen, pairs, source=source)
    units = model.formulation.units(corpus) if model.formulation is not None else pair_units(corpus)
    encoded = encode_units(tokenizer, units, metadata["max_length"], use_cache=False, corpus=corpus)
    probs, _ = predict_probs(model, runtime, encoded, np.arange(len(pairs)), None, tokenizer.pad_token_id or 0,
                             batch_size)
    each = thresholds_of(threshold, [pair.criterion_id for pair in pairs])
    names = {c.id: c.name for c in chosen}
    return [Prediction(pair.post_id, pair.criterion_id, names[pair.criterion_id], float(p),
                       int(p >= (each[row] if isinstance(each, np.ndarray) else each)))
            for row, (pair, p) in enumerate(zip(pairs, probs))]


def model_folder(run_dir: Path) -> Path:
    """The model folder of a run folder (``run/model``), or ``run_dir`` itself when it is one."""
    return run_dir / "model" if (run_dir / "model").is_dir() else run_dir


def predict_file(model_dir: Path, input_csv: Path, output_csv: Path, registry: Registry, *,
                 batch_size: int = 64, criteria_json: Path | None = None) -> int:
    """Write ``post_id,criterion_id,criterion,probability,met`` for every post x criterion; returns
    rows. ``criteria_json`` scores other criteria than the model was trained on, where its
    formulation can (see :func:`score_posts`)."""
    check_output_file(output_csv, "predictions file")  # before the model loads: fail fast
    posts = load_posts(input_csv, what="input file")
    other = load_criteria_json(criteria_json) if criteria_json is not None else None
    model, tokenizer, metadata = load_classifier(model_folder(model_dir), registry)
    runtime = default_runtime(registry)
    rows = score_posts(runtime.prepare(model), tokenizer, metadata, posts, runtime, batch_size=batch_size,
                       source=str(input_csv), criteria=other)
    with atomic_output(output_csv, "predictions file", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        for row in rows:
            writer.writerow([row.post_id, row.criterion_id, row.criterion, f"{row.probability:.6f}", row.met])
    return len(rows)
