"""Model inputs: what the encoder reads ("units") and where each (post, criterion) pair's score
comes from.

A formulation decides the units: the cross-encoder reads one unit per pair (post and criterion
text together), a multi-label encoder one unit per post (scoring every criterion at once). Either
way each pair is scored from one unit, at one output *slot* of it: the pair cross-encoder has one
slot per unit, the multi-label encoder one per criterion. Splits, metrics and thresholds stay in
pairs; only the model sees units.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from criteria.data.corpus import Corpus

__all__ = ["Units", "pair_units", "post_units", "with_criteria"]


@dataclass(frozen=True)
class Units:
    """``first[u]`` (and ``second[u]`` for text pairs) is what unit ``u`` reads; pair ``i`` is
    scored at slot ``pair_slot[i]`` of unit ``pair_unit[i]``; every unit has ``slots`` slots."""

    first: tuple[str, ...]
    second: tuple[str, ...] | None
    pair_unit: np.ndarray
    pair_slot: np.ndarray
    slots: int
    #: Texts the model reads apart from the units, one per slot (a bi-encoder's criteria), or None.
    criteria: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.first)

    @property
    def sha256(self) -> str:
        """A hash of everything the encoder reads and how pairs map to it (for token caches)."""
        digest = hashlib.sha256(json.dumps([self.first, self.second, self.slots, self.criteria]).encode("utf-8"))
        digest.update(self.pair_unit.astype(np.int64).tobytes())
        digest.update(self.pair_slot.astype(np.int64).tobytes())
        return digest.hexdigest()

    def units_of(self, pairs: Sequence[int]) -> np.ndarray:
        """The units the pairs at ``pairs`` are scored from (each once, ascending)."""
        return np.unique(self.pair_unit[np.asarray(pairs, dtype=np.int64)])


def pair_units(corpus: Corpus) -> Units:
    """One unit per pair: the post with the criterion's text (a cross-encoder), one slot."""
    criteria = {c.id: c.text for c in corpus.criteria}
    count = len(corpus.pairs)
    return Units(tuple(corpus.text(p) for p in corpus.pairs), tuple(criteria[p.criterion_id] for p in corpus.pairs),
                 np.arange(count, dtype=np.int64), np.zeros(count, dtype=np.int64), 1)


def post_units(corpus: Corpus) -> Units:
    """One unit per post, one slot per criterion (in the corpus's criteria order)."""
    posts = {post_id: u for u, post_id in enumerate(corpus.posts)}
    slot = {c.id: s for s, c in enumerate(corpus.criteria)}
    return Units(tuple(corpus.posts.values()), None,
                 np.fromiter((posts[p.post_id] for p in corpus.pairs), dtype=np.int64, count=len(corpus.pairs)),
                 np.fromiter((slot[p.criterion_id] for p in corpus.pairs), dtype=np.int64, count=len(corpus.pairs)),
                 len(corpus.criteria))


def with_criteria(units: Units, corpus: Corpus) -> Units:
    """``units`` that also read the corpus's criterion texts, one per slot (a bi-encoder's)."""
    from dataclasses import replace

    return replace(units, criteria=tuple(c.text for c in corpus.criteria))
