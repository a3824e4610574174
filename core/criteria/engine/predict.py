"""Scoring posts against every criterion with a saved model folder."""

from __future__ import annotations

import csv
from pathlib import Path

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


def predict_file(model_dir: Path, input_csv: Path, output_csv: Path, registry: Registry, *,
                 batch_size: int = 64) -> int:
    """Write ``post_id,criterion_id,criterion,probability,met`` for every post x criterion; returns rows."""
    folder = model_dir / "model" if (model_dir / "model").is_dir() else model_dir
    model, tokenizer, metadata = load_classifier(folder, registry)
    criteria = tuple(Criterion(**c) for c in metadata["criteria"])
    posts = read_posts(input_csv)
    pairs = tuple(Pair(post_id, c.id, 0) for post_id in posts for c in criteria)
    corpus = Corpus(posts, criteria, pairs, source=str(input_csv))
    encoded = encode_pairs(tokenizer, corpus, metadata["max_length"], use_cache=False)
    indices = np.arange(len(pairs))
    runtime = default_runtime(registry)
    model = runtime.prepare(model)
    probs, _ = predict_probs(model, runtime, encoded, indices, None, tokenizer.pad_token_id or 0, batch_size)
    threshold = float(metadata.get("threshold", 0.5))
    names = {c.id: c.name for c in criteria}
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    with output_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["post_id", "criterion_id", "criterion", "probability", "met"])
        for pair, p in zip(pairs, probs):
            writer.writerow([pair.post_id, pair.criterion_id, names[pair.criterion_id], f"{p:.6f}", int(p >= threshold)])
    return len(pairs)
