"""Scoring posts against every criterion with a saved model folder: ``criteria predict`` and the
MLflow model share :func:`score_posts`."""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from criteria.data.corpus import Corpus, Criterion, DataError, Pair
from criteria.data.tokens import encode_pairs
from criteria.engine.inference import predict_probs
from criteria.engine.model import load_classifier
from criteria.engine.runtime import Runtime
from criteria.plugin.registry import Registry


def read_posts(path: Path) -> dict[str, str]:
    """``post_id,text`` rows; extra columns are ignored."""
    if not path.is_file():
        raise DataError("file not found", file=path, hint="pass a CSV with columns post_id,text")
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"post_id", "text"} - set(reader.fieldnames or ())
            if missing:
                raise DataError(f"missing column(s) {', '.join(sorted(missing))}; found {reader.fieldnames}",
                                file=path, row=1, hint="the header must include post_id and text")
            posts = {}
            for row_number, row in enumerate(reader, start=2):
                text = " ".join((row["text"] or "").split())
                if text:
                    posts[row["post_id"]] = text
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})", file=path, hint="save the file as UTF-8") from None
    if not posts:
        raise DataError("no non-empty posts", file=path)
    return posts


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
                batch_size: int = 64, source: str = "posts") -> list[Prediction]:
    """Every post in ``posts`` (post_id -> text) against every criterion the model was trained on,
    at the model's decision threshold."""
    criteria = tuple(Criterion(**c) for c in metadata["criteria"])
    pairs = tuple(Pair(post_id, c.id, 0) for post_id in posts for c in criteria)
    corpus = Corpus(posts, criteria, pairs, source=source)
    encoded = encode_pairs(tokenizer, corpus, metadata["max_length"], use_cache=False)
    probs, _ = predict_probs(model, runtime, encoded, np.arange(len(pairs)), None, tokenizer.pad_token_id or 0,
                             batch_size)
    threshold = float(metadata.get("threshold", 0.5))
    names = {c.id: c.name for c in criteria}
    return [Prediction(pair.post_id, pair.criterion_id, names[pair.criterion_id], float(p), int(p >= threshold))
            for pair, p in zip(pairs, probs)]


def model_folder(run_dir: Path) -> Path:
    """The model folder of a run folder (``run/model``), or ``run_dir`` itself when it is one."""
    return run_dir / "model" if (run_dir / "model").is_dir() else run_dir


def predict_file(model_dir: Path, input_csv: Path, output_csv: Path, registry: Registry, *,
                 batch_size: int = 64) -> int:
    """Write ``post_id,criterion_id,criterion,probability,met`` for every post x criterion; returns rows."""
    model, tokenizer, metadata = load_classifier(model_folder(model_dir), registry)
    posts = read_posts(input_csv)
    runtime = default_runtime(registry)
    rows = score_posts(runtime.prepare(model), tokenizer, metadata, posts, runtime, batch_size=batch_size,
                       source=str(input_csv))
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    with output_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        for row in rows:
            writer.writerow([row.post_id, row.criterion_id, row.criterion, f"{row.probability:.6f}", row.met])
    return len(rows)
