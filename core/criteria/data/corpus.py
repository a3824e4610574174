"""The in-memory corpus: posts, criteria and every (post, criterion) pair with its label.

A :class:`Corpus` is what every loader returns and what the splits and the training engine
consume. Pairs are addressed by their index in :attr:`Corpus.pairs`; the post text is looked up
through :meth:`Corpus.text` so a post repeated across nine criteria is stored once.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from criteria.errors import CriteriaError, did_you_mean

#: The nine criteria of a major depressive episode, in the order of their ids ``A.1`` .. ``A.9``.
CRITERION_NAMES = (
    "DEPRESSED_MOOD", "ANHEDONIA", "APPETITE_CHANGE", "SLEEP_ISSUES", "PSYCHOMOTOR",
    "FATIGUE", "WORTHLESSNESS", "COGNITIVE_ISSUES", "SUICIDAL_THOUGHTS",
)
#: ``{"A.1": "DEPRESSED_MOOD", ...}``
STANDARD_IDS = {f"A.{i}": name for i, name in enumerate(CRITERION_NAMES, start=1)}


class DataError(CriteriaError):
    """A data file is unusable. The message names the file, row (1-based line number in the
    file, header included) and column where they apply, and says how to fix it."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
        hint: str = "",
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        where = [part for part in (
            self.file,
            f"row {self.row}" if self.row is not None else None,
            f"column {self.column!r}" if self.column is not None else None,
        ) if part]
        text = f"{', '.join(where)}: {self.message}" if where else self.message
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


def normalize_text(text: str) -> str:
    """Collapse every run of whitespace (newlines included) to one space and strip; keep case."""
    return " ".join(text.split())


@dataclass(frozen=True)
class Criterion:
    """One criterion: ``id`` (``"A.1"``), ``name`` (``"DEPRESSED_MOOD"``; the id itself for a
    user-supplied criterion with an unknown id) and the description fed to the model."""

    id: str
    name: str
    text: str


@dataclass(frozen=True)
class Pair:
    """One (post, criterion) example. ``evidence`` holds the status-1 sentences (ReDSM5)."""

    post_id: str
    criterion_id: str
    label: int
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Corpus:
    """Posts, criteria and labelled pairs (post-major order). Treat it as immutable."""

    posts: dict[str, str]
    criteria: tuple[Criterion, ...]
    pairs: tuple[Pair, ...]
    source: str

    def criterion(self, criterion_id: str) -> Criterion:
        for criterion in self.criteria:
            if criterion.id == criterion_id:
                return criterion
        known = [c.id for c in self.criteria]
        raise DataError(
            f"unknown criterion id {criterion_id!r}{did_you_mean(criterion_id, known)}",
            hint=f"known ids in {self.source}: {', '.join(known)}",
        )

    def text(self, pair: Pair) -> str:
        """The (normalized) text of the pair's post."""
        return self.posts[pair.post_id]

    @property
    def labels(self) -> list[int]:
        return [pair.label for pair in self.pairs]

    @functools.cached_property
    def sha256(self) -> str:
        """Hex SHA-256 over the posts, the criteria and the labels, in corpus order.

        The order is part of the hash on purpose: pair indices (splits, token caches) are
        positions in :attr:`pairs`, so two corpora with the same hash index the same examples.
        Evidence and :attr:`source` are not hashed: they do not change what a model sees.
        """
        digest = hashlib.sha256()

        def feed(record: object) -> None:
            digest.update(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
            digest.update(b"\n")

        feed(["criteria-corpus", 1])
        for post_id, text in self.posts.items():
            feed(["post", post_id, text])
        for criterion in self.criteria:
            feed(["criterion", criterion.id, criterion.name, criterion.text])
        for pair in self.pairs:
            feed(["pair", pair.post_id, pair.criterion_id, pair.label])
        return digest.hexdigest()

    def subset(self, indices: Iterable[int]) -> list[Pair]:
        """The pairs at ``indices``, in that order."""
        return [self.pairs[i] for i in indices]

    def post_ids(self, indices: Iterable[int] | None = None) -> list[str]:
        """The post id of each pair at ``indices`` (default: every pair); the grouping key of splits."""
        pairs = self.pairs if indices is None else self.subset(indices)
        return [pair.post_id for pair in pairs]

    def summary(self) -> str:
        """One line for logs: counts of posts, criteria, pairs and positives."""
        positives = sum(self.labels)
        return (
            f"{self.source}: {len(self.posts)} posts x {len(self.criteria)} criteria = "
            f"{len(self.pairs)} pairs, {positives} positive ({positives / max(len(self.pairs), 1):.1%})"
        )
