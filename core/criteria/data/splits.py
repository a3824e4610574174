"""Train/validation/test splits over pair indices, grouped by post and stratified.

Grouped: every pair of a post falls on the same side, so no post text is ever seen in training and
scored in validation or test. The split is drawn over *posts* (scikit-learn's
``train_test_split`` / ``StratifiedKFold`` on the list of posts) and expanded back to the posts'
pairs, which is what ``GroupShuffleSplit`` / ``StratifiedGroupKFold`` do with one stratum per group,
but exact: each stratum is spread in proportion, not greedily.

Stratified: a post's stratum is how many criteria it meets, bucketed 0 / 1-2 / 3+, so
symptom-free and symptomatic posts spread evenly. A bucket too small to be spread is merged into
its neighbour; when one bucket is left the split is plain shuffled.

Everything is seeded: the same corpus, indices and seed always give the same split. Index tuples
are sorted ascending.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from criteria.data.corpus import Corpus, DataError

#: Upper bounds (inclusive) of the stratum buckets by number of positive criteria: 0, 1-2, 3+.
STRATUM_BOUNDS = (0, 2)


@dataclass(frozen=True)
class Split:
    """Indices into ``corpus.pairs`` for training and validation."""

    train: tuple[int, ...]
    validation: tuple[int, ...]
    name: str = "holdout"


def _bucket(positives: int) -> int:
    return sum(positives > bound for bound in STRATUM_BOUNDS)


def _group(corpus: Corpus, indices: Iterable[int]) -> tuple[list[list[int]], list[int]]:
    """The pair indices of each post (posts in order of first appearance) and each post's bucket."""
    members: dict[str, list[int]] = {}
    positives: Counter[str] = Counter()
    count = len(corpus.pairs)
    for index in sorted(set(indices)):
        if not 0 <= index < count:
            raise DataError(f"pair index {index} is out of range: the corpus has {count} pairs")
        pair = corpus.pairs[index]
        members.setdefault(pair.post_id, []).append(index)
        positives[pair.post_id] += pair.label
    return list(members.values()), [_bucket(positives[post]) for post in members]


def _strata(buckets: list[int], min_count: int, max_strata: int) -> list[int] | None:
    """Buckets merged until each holds ``min_count`` posts and there are at most ``max_strata``;
    None when stratifying is impossible (one stratum left)."""
    mapping = {b: b for b in set(buckets)}
    while True:
        counts = Counter(mapping[b] for b in buckets)
        labels = sorted(counts)
        if len(labels) <= 1:
            return None
        small = [b for b in labels if counts[b] < min_count]
        if not small and len(labels) <= max_strata:
            return [mapping[b] for b in buckets]
        target = min(small or labels, key=lambda b: (counts[b], b))
        i = labels.index(target)
        neighbours = [labels[j] for j in (i - 1, i + 1) if 0 <= j < len(labels)]
        into = min(neighbours, key=lambda b: (counts[b], b))
        mapping = {k: (into if v == target else v) for k, v in mapping.items()}


def _expand(groups: list[list[int]], chosen: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(index for g in chosen for index in groups[g]))


def _shuffle_split(corpus: Corpus, indices: Iterable[int], fraction: float, seed: int,
                   what: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise DataError(f"{what} fraction must be between 0 and 1 (exclusive), got {fraction}")
    groups, buckets = _group(corpus, indices)
    n_held = math.ceil(fraction * len(groups))
    n_kept = len(groups) - n_held
    if n_kept < 1:
        raise DataError(
            f"cannot hold out {fraction:g} of {len(groups)} post{'s' if len(groups) != 1 else ''} for "
            f"{what} and keep some for training", hint=f"lower the {what} fraction or add posts",
        )
    strata = _strata(buckets, min_count=2, max_strata=min(n_held, n_kept))
    kept, held = train_test_split(list(range(len(groups))), test_size=n_held, random_state=seed,
                                  shuffle=True, stratify=strata)
    return _expand(groups, kept), _expand(groups, held)


def test_split(corpus: Corpus, fraction: float, seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(rest, test)``: whole posts held out from the whole study. ``fraction`` 0: no test set."""
    if fraction == 0:
        return tuple(range(len(corpus.pairs))), ()
    return _shuffle_split(corpus, range(len(corpus.pairs)), fraction, seed, what="test")


# Not a pytest test function, whatever its name says.
test_split.__test__ = False  # type: ignore[attr-defined]


def holdout(corpus: Corpus, indices: Iterable[int], validation_fraction: float, seed: int) -> Split:
    """One train/validation split of ``indices`` (typically the ``rest`` of :func:`test_split`)."""
    train, validation = _shuffle_split(corpus, indices, validation_fraction, seed, what="validation")
    return Split(train=train, validation=validation, name="holdout")


def kfold(corpus: Corpus, indices: Iterable[int], folds: int, seed: int) -> list[Split]:
    """``folds`` splits of ``indices``; every post is in exactly one fold's validation side."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if folds < 2:
        raise DataError(f"folds must be at least 2, got {folds}")
    groups, buckets = _group(corpus, indices)
    if folds > len(groups):
        raise DataError(f"cannot make {folds} folds from {len(groups)} posts",
                        hint="lower data.folds or add posts")
    strata = _strata(buckets, min_count=folds, max_strata=len(groups))
    positions = list(range(len(groups)))
    if strata is None:
        splitter = KFold(n_splits=folds, shuffle=True, random_state=seed).split(positions)
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(positions, strata)
    return [
        Split(train=_expand(groups, train), validation=_expand(groups, validation), name=f"fold-{k}")
        for k, (train, validation) in enumerate(splitter)
    ]


__all__ = ["STRATUM_BOUNDS", "Split", "holdout", "kfold", "test_split"]
