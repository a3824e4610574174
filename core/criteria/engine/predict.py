"""Scoring posts against every criterion with a saved model folder."""

from __future__ import annotations

import csv
from pathlib import Path

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


def _global(threshold: float | dict[str, float]) -> float:
    """One threshold for criteria the model has no threshold of its own for: the median of its own."""
    return float(np.median(list(threshold.values()))) if isinstance(threshold, dict) else float(threshold)


def default_runtime(registry: Registry) -> Runtime:
    """The best backend available here (highest priority), with its defaults."""
    backends = [info for info in registry.plugins("backend").values() if info.availability()]
    best = max(backends, key=lambda info: info.cls.priority)
    return best.cls().build()


def predict_file(model_dir: Path, input_csv: Path, output_csv: Path, registry: Registry, *,
                 batch_size: int = 64, criteria_json: Path | None = None) -> int:
    """Write ``post_id,criterion_id,criterion,probability,met`` for every post x criterion; returns
    rows. ``criteria_json`` scores other criteria than the model was trained on, where its
    formulation can (a bi-encoder reads criterion texts; they are then judged at the model's
    global threshold)."""
    check_output_file(output_csv, "predictions file")  # before the model loads: fail fast
    posts = load_posts(input_csv, what="input file")
    other = load_criteria_json(criteria_json) if criteria_json is not None else None
    folder = model_dir / "model" if (model_dir / "model").is_dir() else model_dir
    model, tokenizer, metadata = load_classifier(folder, registry)
    criteria = tuple(Criterion(**c) for c in metadata["criteria"])
    if other is not None:
        formulation = model.formulation
        if formulation is None or not formulation.scores_new_criteria:
            name = formulation.name if formulation is not None else "pair"
            raise CriteriaError(
                f"this model ({name} formulation) scores only the criteria it was trained on "
                f"({', '.join(c.id for c in criteria)}); drop --criteria, or train a formulation that reads "
                "criterion texts (biencoder)")
        criteria = other
        model.set_criteria(criteria_tensors(encode_texts(tokenizer, [c.text for c in criteria], metadata["max_length"]),
                                            tokenizer.pad_token_id or 0))
        metadata = {**metadata, "threshold": _global(metadata.get("threshold", 0.5))}
    pairs = tuple(Pair(post_id, c.id, 0) for post_id in posts for c in criteria)
    corpus = Corpus(posts, criteria, pairs, source=str(input_csv))
    units = model.formulation.units(corpus) if model.formulation is not None else pair_units(corpus)
    encoded = encode_units(tokenizer, units, metadata["max_length"], use_cache=False, corpus=corpus)
    indices = np.arange(len(pairs))
    runtime = default_runtime(registry)
    model = runtime.prepare(model)
    probs, _ = predict_probs(model, runtime, encoded, indices, None, tokenizer.pad_token_id or 0, batch_size)
    met_from = thresholds_of(metadata.get("threshold", 0.5), [pair.criterion_id for pair in pairs])
    names = {c.id: c.name for c in criteria}
    with atomic_output(output_csv, "predictions file", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["post_id", "criterion_id", "criterion", "probability", "met"])
        for row, (pair, p) in enumerate(zip(pairs, probs)):
            threshold = met_from[row] if isinstance(met_from, np.ndarray) else met_from
            writer.writerow([pair.post_id, pair.criterion_id, names[pair.criterion_id], f"{p:.6f}", int(p >= threshold)])
    return len(pairs)
