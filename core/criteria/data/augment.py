"""Augmented copies of training posts: what augmenter plugins read and how their copies join a split.

An augmenter (:class:`criteria.AugmenterPlugin`) rewrites a :class:`Post`: its sentences, and which
of them are evidence for some criterion (the ReDSM5 annotations), so that it can change the words
that carry a label and leave the rest, or keep the evidence and drop the rest. A copy keeps every
label of its post. Which posts get a copy, and with which random draws, depends only on the
seed and the post's id (:func:`augment_posts`), so the same seed gives the same text in every
fold and every run.

Copies are appended after every existing pair, filed under their source post, like evidence
sentences (:mod:`criteria.data.evidence`): original indices keep their meaning, and a split
trains on the copies of its own training posts only. Validation and test posts are never
augmented, so no augmented text is ever evaluated.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Mapping, Protocol, Sequence

from criteria.data.corpus import Corpus, Pair

__all__ = [
    "STOP_WORDS", "AugmentContext", "AugmentedPairs", "MaskedLanguageModel", "Post", "Word", "augment_posts", "posts_of",
    "replace_words", "replaceable_words", "split_sentences", "with_augmented_posts",
]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
#: Words an augmenter never replaces: function words, pronouns, and the negations and quantities
#: that decide whether a cue holds ("not", "never", "no longer", "every").
STOP_WORDS = frozenset("""
a about above after again against all almost also always am an and any anymore are around as at be
because been before being below between both but by can can't cannot could couldn't did didn't do does
doesn't doing don't down during each either even ever every few for from further had hadn't has hasn't
have haven't having he her here hers herself him himself his how i i'd i'll i'm i've if in into is isn't
it it's its itself just least less like me more most much must my myself neither never no nobody none
nor not nothing now of off on once only or other our ours ourselves out over own really same she should
shouldn't since so some still such than that the their theirs them themselves then there these they this
those though through to too under until up upon us very was wasn't we were weren't what when where which
while who whom why will with without won't would wouldn't yet you your yours yourself yourselves
""".split())


@dataclass(frozen=True)
class Post:
    """A post as augmenters read it: its sentences in order, and for each whether it is evidence
    for some criterion. ``" ".join(sentences)`` is the post's text."""

    id: str
    sentences: tuple[str, ...]
    evidence: tuple[bool, ...]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    @property
    def evidence_sentences(self) -> list[int]:
        """Indices of the evidence sentences."""
        return [i for i, flag in enumerate(self.evidence) if flag]

    def evidence_words(self, strength: float, rng: random.Random) -> list[tuple[int, Word]]:
        """Words to replace: ``strength`` of the replaceable words (:func:`replaceable_words`) of
        each evidence sentence, at least one where it has one, drawn with ``rng``; as
        ``(sentence index, word)`` in text order."""
        picked = []
        for index in self.evidence_sentences:
            words = replaceable_words(self.sentences[index])
            if words:
                count = max(1, round(strength * len(words)))
                picked += [(index, word) for word in sorted(rng.sample(words, count), key=lambda w: w.start)]
        return picked

    def rewritten(self, replacements: Mapping[tuple[int, Word], str]) -> str:
        """The post's text with words replaced (keys as :meth:`evidence_words` gives them)."""
        by_sentence: dict[int, dict[Word, str]] = {}
        for (index, word), new in replacements.items():
            by_sentence.setdefault(index, {})[word] = new
        return " ".join(replace_words(sentence, by_sentence[i]) if i in by_sentence else sentence
                        for i, sentence in enumerate(self.sentences))

    def without(self, dropped: Iterable[int]) -> str:
        """The post's text without the sentences at ``dropped``."""
        gone = set(dropped)
        return " ".join(sentence for i, sentence in enumerate(self.sentences) if i not in gone)


@dataclass(frozen=True)
class Word:
    """A replaceable word of a sentence: ``sentence[start:end] == text``."""

    start: int
    end: int
    text: str


class MaskedLanguageModel(Protocol):
    """The continued-pretraining stage's masked language model, as augmenters use it."""

    mask_token: str

    def fill(self, texts: Sequence[str], top_k: int, exclude: Collection[str] = ()) -> list[list[list[str]]]:
        """For each text, for each mask token in it (in order), the ``top_k`` most likely whole
        words (lower case, letters only) other than those in ``exclude``, best first."""


@dataclass(frozen=True)
class AugmentContext:
    """What an augmenter's ``build`` may use from the model being fine-tuned. Each callable loads
    (or first makes) its resource on the first call; an augmenter that calls none costs nothing.

    ``masked_lm()``: the masked language model of the continued-pretraining stage (the trial's own
    when its ``[pretrain]`` stage runs, else one adapted to the split's training posts with the
    stage's defaults). ``input_embeddings()``: the model's whole-word vocabulary and their input
    embeddings, one L2-normalised row per word (a ``numpy`` array)."""

    tokenizer: Any
    masked_lm: Callable[[], MaskedLanguageModel]
    input_embeddings: Callable[[], tuple[Sequence[str], Any]]


def split_sentences(text: str, evidence: Iterable[str] = ()) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """``text`` cut into sentences, each marked as one of ``evidence`` or not. Evidence sentences
    are found verbatim (the annotations quote them); the text around them is cut after ``.``,
    ``!`` or ``?``. An evidence sentence not found in the text is left out of the marks."""
    spans = []
    for sentence in sorted(set(evidence), key=len, reverse=True):
        start = text.find(sentence)
        if start >= 0 and not any(s < start + len(sentence) and start < e for s, e in spans):
            spans.append((start, start + len(sentence)))
    spans.sort()
    sentences: list[str] = []
    flags: list[bool] = []

    def plain(segment: str) -> None:
        for piece in _SENTENCE_END.split(segment.strip()):
            if piece.strip():
                sentences.append(piece.strip())
                flags.append(False)

    position = 0
    for start, end in spans:
        plain(text[position:start])
        sentences.append(text[start:end].strip())
        flags.append(True)
        position = end
    plain(text[position:])
    return tuple(sentences), tuple(flags)


def posts_of(corpus: Corpus, post_ids: Iterable[str]) -> list[Post]:
    """The posts ``post_ids`` of ``corpus``, in that order, each with its evidence sentences (of
    every criterion it meets)."""
    evidence: dict[str, set[str]] = {}
    for pair in corpus.pairs:
        if pair.label and pair.evidence:
            evidence.setdefault(pair.post_id, set()).update(pair.evidence)
    posts = []
    for post_id in post_ids:
        sentences, flags = split_sentences(corpus.posts[post_id], evidence.get(post_id, ()))
        posts.append(Post(post_id, sentences, flags))
    return posts


def replaceable_words(sentence: str, min_length: int = 3) -> list[Word]:
    """The words of ``sentence`` an augmenter may replace: letters only, at least ``min_length``
    long, not in :data:`STOP_WORDS` (function words, negations)."""
    return [Word(m.start(), m.end(), m.group()) for m in _WORD.finditer(sentence)
            if len(m.group()) >= min_length and m.group().lower() not in STOP_WORDS]


def replace_words(sentence: str, replacements: Mapping[Word, str]) -> str:
    """``sentence`` with each word replaced, in the case of the word it replaces (``Tired`` ->
    ``Weary``, ``TIRED`` -> ``WEARY``)."""
    out, position = [], 0
    for word in sorted(replacements, key=lambda w: w.start):
        out += [sentence[position:word.start], _same_case(replacements[word], word.text)]
        position = word.end
    out.append(sentence[position:])
    return "".join(out)


def _same_case(new: str, old: str) -> str:
    if old.isupper() and len(old) > 1:
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def augment_posts(posts: Iterable[Post], augment: Callable[[Post, random.Random], str | None],
                  probability: float, seed: int) -> dict[str, str]:
    """The augmented text of each post that gets a copy: chosen with ``probability``, rewritten by
    ``augment``, with draws seeded by ``seed`` and the post's id alone. A copy identical to its
    post, or None, is no copy."""
    copies = {}
    for post in posts:
        rng = random.Random(f"criteria-augment|{seed}|{post.id}")
        if rng.random() >= probability:
            continue
        text = augment(post, rng)
        if text and text != post.text:
            copies[post.id] = text
    return copies


@dataclass(frozen=True)
class AugmentedPairs:
    """A corpus extended with augmented copies of some posts; ``indices`` are the copies' pairs."""

    corpus: Corpus
    indices: tuple[int, ...] = ()


def with_augmented_posts(corpus: Corpus, copies: Mapping[str, str]) -> AugmentedPairs:
    """``corpus`` plus, for each post in ``copies``, a copy with the new text and every label of
    the post (its pairs repeated, in corpus order, under the id ``<post>#augmented``)."""
    if not copies:
        return AugmentedPairs(corpus)
    posts = dict(corpus.posts)
    pairs = list(corpus.pairs)
    extra = []
    for pair in corpus.pairs:
        text = copies.get(pair.post_id)
        if text is None:
            continue
        copy_id = f"{pair.post_id}#augmented"
        posts[copy_id] = text
        extra.append(len(pairs))
        pairs.append(Pair(copy_id, pair.criterion_id, pair.label))
    extended = Corpus(posts, corpus.criteria, tuple(pairs), f"{corpus.source} + {len(copies)} augmented posts")
    return AugmentedPairs(extended, tuple(extra))
