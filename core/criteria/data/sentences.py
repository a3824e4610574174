"""Sentences of posts, which of them are evidence for a criterion, and which tokens read each one.

Evidence binding scores every sentence of a post against a criterion, so a post must be cut into
sentences the same way for training, evaluation and prediction, and each annotated sentence must
land on exactly the sentences it names:

- The rule (:data:`SENTENCE_BREAK`) is the one the ReDSM5 release and the embedded corpus number
  their sentences by: a break after ``.``, ``!`` or ``?`` (optionally followed by a closing quote
  or bracket) and whitespace, and at every newline.
- Annotated sentences are *anchors*: an annotation's ``sentence_text`` found verbatim in its post
  is kept as one sentence even where the rule would cut it otherwise (an abbreviation, a missing
  space), and only the text between anchors is cut by the rule. Annotations that are not found
  in their post (the text was edited after annotating) are counted and left out.
- At prediction there are no annotations: the rule alone cuts the posts.

Posts are whitespace-normalized when loaded, and so are the annotations, so a sentence is found
whatever line breaks or double spaces the files held.

Tokens are mapped to sentences through the tokenizer's character offsets (a fast tokenizer is
needed): the tokens of a unit's first text (the post) carry the index of the sentence they fall
in, every other token (special tokens, a criterion text, padding) ``-1``. A sentence cut off by
``max_length`` has no tokens.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from criteria.data.corpus import Corpus
from criteria.data.units import Units
from criteria.errors import CriteriaError

__all__ = [
    "SENTENCE_BREAK",
    "SentenceIndex",
    "Span",
    "TokenSentences",
    "locate_evidence",
    "split_sentences",
    "token_sentences",
]

#: Where the rule cuts a text into sentences (the ReDSM5 release's numbering).
SENTENCE_BREAK = re.compile(r"(?<=[.!?][\"')\]])\s+|(?<=[.!?])\s+|\n+")

#: A sentence as ``(start, end)`` character offsets into its text.
Span = tuple[int, int]


def _rule_spans(text: str, start: int, end: int) -> list[Span]:
    """The rule's sentences of ``text[start:end]``, stripped, empty pieces dropped."""
    spans = []
    cursor = start
    for match in SENTENCE_BREAK.finditer(text, start, end):
        spans.append((cursor, match.start()))
        cursor = match.end()
    spans.append((cursor, end))
    out = []
    for a, b in spans:
        piece = text[a:b]
        stripped = piece.strip()
        if stripped:
            a += len(piece) - len(piece.lstrip())
            out.append((a, a + len(stripped)))
    return out


def _find_free(text: str, sentence: str, taken: list[Span]) -> Span | None:
    """The first occurrence of ``sentence`` in ``text`` that overlaps no span in ``taken``."""
    start = text.find(sentence)
    while start >= 0:
        end = start + len(sentence)
        if not any(a < end and start < b for a, b in taken):
            return start, end
        start = text.find(sentence, start + 1)
    return None


def split_sentences(text: str, anchors: Iterable[str] = ()) -> tuple[Span, ...]:
    """The sentences of ``text`` in order: each anchor (an annotated sentence) found in it stays
    whole, and the text around the anchors is cut by :data:`SENTENCE_BREAK`."""
    fixed: list[Span] = []
    for anchor in sorted({a.strip() for a in anchors if a.strip()}, key=len, reverse=True):
        span = _find_free(text, anchor, fixed)  # the longest first: a short anchor inside a long one waits
        if span is not None:
            fixed.append(span)
    fixed.sort()
    spans: list[Span] = []
    cursor = 0
    for start, end in fixed:
        spans.extend(_rule_spans(text, cursor, start))
        spans.append((start, end))
        cursor = end
    spans.extend(_rule_spans(text, cursor, len(text)))
    return tuple(spans)


@dataclass(frozen=True)
class SentenceIndex:
    """The sentences of each post (spans into its text) and, for each (post, criterion) with
    evidence, the indices of its evidence sentences. ``unlocated`` counts annotated sentences not
    found in their post."""

    spans: Mapping[str, tuple[Span, ...]]
    evidence: Mapping[tuple[str, str], tuple[int, ...]]
    unlocated: int = 0

    def __bool__(self) -> bool:
        return bool(self.evidence)

    def sentences(self, post_id: str, text: str) -> list[str]:
        """The sentences of post ``post_id`` (whose text is ``text``)."""
        return [text[a:b] for a, b in self.spans[post_id]]


def locate_evidence(corpus: Corpus, posts: Iterable[str] | None = None) -> SentenceIndex:
    """Cut ``posts`` (default: every post of ``corpus``) into sentences, anchored on their
    annotated evidence, and map each met pair's evidence to sentence indices."""
    wanted = list(corpus.posts) if posts is None else list(posts)
    anchors: dict[str, set[str]] = {post: set() for post in wanted}
    for pair in corpus.pairs:
        if pair.label and pair.post_id in anchors:
            anchors[pair.post_id].update(pair.evidence)
    spans = {post: split_sentences(corpus.posts[post], anchors[post]) for post in wanted}
    evidence: dict[tuple[str, str], tuple[int, ...]] = {}
    unlocated = 0
    for pair in corpus.pairs:
        if not (pair.label and pair.evidence and pair.post_id in spans):
            continue
        text, post_spans = corpus.posts[pair.post_id], spans[pair.post_id]
        found: set[int] = set()
        for sentence in pair.evidence:
            start = text.find(sentence.strip())
            if start < 0:
                unlocated += 1
                continue
            end = start + len(sentence.strip())
            found.update(i for i, (a, b) in enumerate(post_spans) if a < end and start < b)
        if found:
            evidence[(pair.post_id, pair.criterion_id)] = tuple(sorted(found))
    return SentenceIndex(spans, evidence, unlocated)


@dataclass(frozen=True)
class TokenSentences:
    """For every token of a tokenization (ragged like :class:`~criteria.data.tokens.EncodedUnits`:
    unit ``u`` is ``values[offsets[u]:offsets[u + 1]]``), the sentence of its unit's post it falls
    in, or -1; ``counts[u]`` is how many sentences unit ``u``'s post has (0: none are known)."""

    values: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray

    def unit(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index]:self.offsets[index + 1]]


def token_sentences(tokenizer: Any, units: Units, max_length: int, spans: Sequence[tuple[Span, ...] | None],
                    offsets: np.ndarray) -> TokenSentences:
    """Map the tokens of ``units`` (tokenized as :func:`~criteria.data.tokens.encode_units` does,
    whose ragged ``offsets`` they must match) to the sentences ``spans[u]`` of each unit's first
    text; units whose spans are None get -1 throughout."""
    from criteria.data.tokens import tokenize_units

    lengths = np.diff(offsets)
    values = np.full(int(offsets[-1]), -1, dtype=np.int16)
    counts = np.zeros(len(units), dtype=np.int64)
    wanted = [u for u, s in enumerate(spans) if s]
    if not wanted:
        return TokenSentences(values, offsets, counts)
    if not getattr(tokenizer, "is_fast", False):
        raise CriteriaError(
            f"evidence binding maps tokens to sentences by character offsets, which {type(tokenizer).__name__} "
            "(a slow tokenizer) cannot give; use a model with a fast tokenizer, or set "
            "[train] evidence_loss_weight = 0"
        )
    subset = Units(tuple(units.first[u] for u in wanted),
                   tuple(units.second[u] for u in wanted) if units.second is not None else None,
                   units.pair_unit, units.pair_slot, units.slots)
    batch = tokenize_units(tokenizer, subset, max_length, return_offsets_mapping=True)
    for row, unit in enumerate(wanted):
        mapping = batch["offset_mapping"][row]
        if len(mapping) != lengths[unit]:
            raise CriteriaError(f"unit {unit} tokenized to {len(mapping)} tokens, not the {lengths[unit]} of its "
                                "cached token ids; clear the token cache (CRITERIA_CACHE_DIR/tokens) and run again")
        unit_spans = spans[unit]
        starts = [a for a, _ in unit_spans]
        counts[unit] = len(unit_spans)
        out = values[offsets[unit]:offsets[unit + 1]]
        for position, (sequence, (a, b)) in enumerate(zip(batch.sequence_ids(row), mapping)):
            if sequence != 0 or b <= a:
                continue
            index = bisect.bisect_right(starts, a) - 1
            if index >= 0 and a < unit_spans[index][1]:
                out[position] = index
    return TokenSentences(values, offsets, counts)
