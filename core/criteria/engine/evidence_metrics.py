"""How well a model finds the evidence of a (post, criterion): metrics over the pair's sentences.

Every metric is computed per (post, criterion) pair that has annotated evidence, then averaged
over those pairs (overall, and per criterion):

- ``evidence_f1``: F1 of the sentences predicted as evidence against the annotated ones. A
  sentence is predicted when its probability is at least 0.5, and the top sentence always is: a
  met pair has evidence by definition, so an empty prediction would say nothing.
- ``evidence_mrr``: the reciprocal rank of the first annotated sentence in the ranking.
- ``evidence_ndcg_at_3``: nDCG of the top 3 with binary relevance.
- ``evidence_recall_at_3``: the share of annotated sentences in the top 3.

A sentence the model could not read (cut off by ``max_length``) has no probability (NaN): it
ranks last and is never predicted, so truncation costs what it should. Ties rank in sentence
order. ``evidence_pairs`` counts the pairs averaged over.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

__all__ = ["EVIDENCE_METRICS", "TOP_K", "evidence_metrics", "pair_metrics", "ranking"]

TOP_K = 3
#: The metric names, as they appear in ``metrics["overall"]`` and in MLflow (``val_evidence_mrr``).
EVIDENCE_METRICS = ("evidence_f1", "evidence_mrr", "evidence_ndcg_at_3", "evidence_recall_at_3")


def ranking(probs: np.ndarray) -> np.ndarray:
    """Sentence indices from most to least likely evidence; unread (NaN) sentences last, ties in
    sentence order."""
    scores = np.where(np.isnan(probs), -np.inf, probs)
    return np.lexsort((np.arange(len(scores)), -scores))


def pair_metrics(probs: np.ndarray, gold: Sequence[int], threshold: float = 0.5, k: int = TOP_K) -> dict[str, float]:
    """The metrics of one pair: ``probs`` holds one probability per sentence of the post (NaN:
    not read), ``gold`` the indices of its evidence sentences (at least one)."""
    probs = np.asarray(probs, dtype=np.float64)
    relevant = set(int(g) for g in gold)
    order = ranking(probs)
    predicted = {int(i) for i in np.flatnonzero(np.nan_to_num(probs, nan=-1.0) >= threshold)}
    if not np.isnan(probs[order[0]]):
        predicted.add(int(order[0]))
    hits = len(predicted & relevant)
    f1 = 2 * hits / (len(predicted) + len(relevant)) if predicted or relevant else 0.0
    rank = next(position for position, sentence in enumerate(order, start=1) if int(sentence) in relevant)
    top = [int(s) for s in order[:k]]
    dcg = sum(1.0 / math.log2(position + 1) for position, s in enumerate(top, start=1) if s in relevant)
    ideal = sum(1.0 / math.log2(position + 1) for position in range(1, min(k, len(relevant)) + 1))
    return {
        "evidence_f1": f1,
        "evidence_mrr": 1.0 / rank,
        "evidence_ndcg_at_3": dcg / ideal,
        "evidence_recall_at_3": len(set(top) & relevant) / len(relevant),
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    out = {name: (float(np.mean([r[name] for r in rows])) if rows else math.nan) for name in EVIDENCE_METRICS}
    out["evidence_pairs"] = len(rows)
    return out


def evidence_metrics(probs: Mapping[int, np.ndarray], gold: Mapping[int, Sequence[int]],
                     groups: Mapping[int, str], threshold: float = 0.5) -> dict[str, dict]:
    """``{"overall": {...}, "per_group": {criterion id: {...}}}`` over the pairs (by index) that
    have both ``probs`` and ``gold``; ``groups`` names each pair's criterion."""
    rows: dict[int, dict[str, float]] = {
        pair: pair_metrics(probs[pair], gold[pair], threshold) for pair in probs if gold.get(pair)
    }
    per_group: dict[str, list[dict[str, float]]] = {}
    for pair, row in rows.items():
        per_group.setdefault(groups[pair], []).append(row)
    return {"overall": _mean(list(rows.values())),
            "per_group": {group: _mean(found) for group, found in sorted(per_group.items())}}
