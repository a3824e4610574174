"""A TF-IDF + logistic-regression baseline on the same (post, criterion) pairs.

One scikit-learn pipeline is fitted per criterion on that criterion's training posts, so the
transformer classifier has an honest, cheap number to beat.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

__all__ = ["BASELINE_C", "make_pipeline", "tfidf_baseline"]

#: Inverse regularisation strength of the logistic regression (fixed, not tuned).
BASELINE_C = 4.0


def make_pipeline(seed: int = 0, C: float = BASELINE_C) -> Pipeline:
    """TfidfVectorizer(word 1-2 grams, sublinear tf, min_df=1) -> LogisticRegression(balanced)."""
    return Pipeline([
        ("tfidf", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1)),
        ("clf", LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)),
    ])


def tfidf_baseline(train_texts: Sequence[str], train_groups: Sequence[str], train_labels: Sequence[int],
                   eval_texts: Sequence[str], eval_groups: Sequence[str], seed: int = 0) -> list[float]:
    """Positive-class probability for each eval example (in order), from one TF-IDF + logistic
    regression pipeline per criterion fitted on that criterion's training pairs.

    ``*_texts`` are the post texts; ``*_groups`` are the criterion ids.  A criterion with a single
    class in training predicts that class's prior (1.0 or 0.0); a criterion never seen in training
    predicts the positive rate over all training pairs (0.5 with no training data at all); a
    criterion whose posts have no usable tokens predicts its own positive rate.
    """
    train_texts = [str(t) for t in train_texts]
    train_groups = [str(g) for g in train_groups]
    y = np.asarray(train_labels).reshape(-1)
    eval_texts = [str(t) for t in eval_texts]
    eval_groups = [str(g) for g in eval_groups]
    if not (len(train_texts) == len(train_groups) == y.size):
        raise ValueError(f"train_texts, train_groups and train_labels differ in length: "
                         f"{len(train_texts)}, {len(train_groups)}, {y.size}")
    if len(eval_texts) != len(eval_groups):
        raise ValueError(f"eval_texts and eval_groups differ in length: {len(eval_texts)} != {len(eval_groups)}")
    if y.size and not np.isin(y, [0, 1]).all():
        raise ValueError("train_labels must be 0 or 1")
    y = y.astype(np.int64)

    global_prior = float(y.mean()) if y.size else 0.5

    train_idx: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(train_groups):
        train_idx[g].append(i)
    eval_idx: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(eval_groups):
        eval_idx[g].append(i)

    out = np.full(len(eval_texts), global_prior, dtype=np.float64)
    for g in sorted(eval_idx):
        rows = eval_idx[g]
        tr = train_idx.get(g)
        if not tr:
            continue  # unseen criterion: global prior
        y_g = y[tr]
        if y_g.min() == y_g.max():
            out[rows] = float(y_g[0])  # the only class seen: its prior is 1.0 (or 0.0)
            continue
        pipe = make_pipeline(seed=seed)
        try:
            pipe.fit([train_texts[i] for i in tr], y_g)
        except ValueError as exc:  # e.g. "empty vocabulary": no usable tokens in these posts
            if "vocabulary" not in str(exc):
                raise
            out[rows] = float(y_g.mean())
            continue
        pos_col = int(np.flatnonzero(pipe.classes_ == 1)[0])
        out[rows] = pipe.predict_proba([eval_texts[i] for i in rows])[:, pos_col]
    return [float(v) for v in out]
