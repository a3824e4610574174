"""Scoring posts against every criterion with a saved model folder."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from criteria.data.corpus import Corpus, Criterion, Pair
from criteria.data.loaders import load_posts
from criteria.data.tokens import encode_pairs
from criteria.engine.inference import predict_probs
from criteria.engine.model import load_classifier
from criteria.engine.runtime import Runtime
from criteria.files import atomic_output, check_output_file
from criteria.plugin.registry import Registry


def default_runtime(registry: Registry) -> Runtime:
    """The best backend available here (highest priority), with its defaults."""
    backends = [info for info in registry.plugins("backend").values() if info.availability()]
    best = max(backends, key=lambda info: info.cls.priority)
    return best.cls().build()


def predict_file(model_dir: Path, input_csv: Path, output_csv: Path, registry: Registry, *,
                 batch_size: int = 64) -> int:
    """Write ``post_id,criterion_id,criterion,probability,met`` for every post x criterion; returns rows."""
    check_output_file(output_csv, "predictions file")  # before the model loads: fail fast
    posts = load_posts(input_csv, what="input file")
    folder = model_dir / "model" if (model_dir / "model").is_dir() else model_dir
    model, tokenizer, metadata = load_classifier(folder, registry)
    criteria = tuple(Criterion(**c) for c in metadata["criteria"])
    pairs = tuple(Pair(post_id, c.id, 0) for post_id in posts for c in criteria)
    corpus = Corpus(posts, criteria, pairs, source=str(input_csv))
    encoded = encode_pairs(tokenizer, corpus, metadata["max_length"], use_cache=False)
    indices = np.arange(len(pairs))
    runtime = default_runtime(registry)
    model = runtime.prepare(model)
    probs, _ = predict_probs(model, runtime, encoded, indices, None, tokenizer.pad_token_id or 0, batch_size)
    threshold = float(metadata.get("threshold", 0.5))
    names = {c.id: c.name for c in criteria}
    with atomic_output(output_csv, "predictions file", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["post_id", "criterion_id", "criterion", "probability", "met"])
        for pair, p in zip(pairs, probs):
            writer.writerow([pair.post_id, pair.criterion_id, names[pair.criterion_id], f"{p:.6f}", int(p >= threshold)])
    return len(pairs)
