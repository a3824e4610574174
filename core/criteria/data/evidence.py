"""Evidence sentences as extra training pairs.

A ReDSM5 annotation names the sentence of a post that shows a criterion. Trained on whole posts
only, a small model has to find that sentence among many others, from a few hundred examples. Shown
the sentence on its own as well, it learns the cue directly, and cheaply: a sentence is a fraction
of a post's tokens. Each evidence sentence becomes a pair with each criterion it shows (met) and
with a few criteria it does not show (not met), so the model learns which criterion a cue belongs
to, not only that some cue is there.

The extra pairs are appended after every original pair, so original pair indices keep their
meaning (splits, token caches and metrics use them). Each extra pair is filed under its source
post, and a split only ever adds the extra pairs of its training posts: no sentence of a
validation or test post is trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from criteria.data.corpus import Corpus, Pair

__all__ = ["EvidencePairs", "with_evidence_pairs"]


@dataclass(frozen=True)
class EvidencePairs:
    """A corpus extended with evidence pairs, and where those pairs came from."""

    corpus: Corpus
    #: source post id -> indices (into ``corpus.pairs``) of the extra pairs made from its sentences
    by_post: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def for_posts(self, post_ids: set[str]) -> list[int]:
        """The extra pairs of ``post_ids``, in corpus order."""
        return sorted(i for post in post_ids for i in self.by_post.get(post, ()))


def with_evidence_pairs(corpus: Corpus, negatives: int, seed: int) -> EvidencePairs:
    """``corpus`` plus one pair per (evidence sentence, criterion it shows), labelled met, and
    ``negatives`` pairs per sentence with criteria it does not show, labelled not met (drawn with
    ``seed``). A corpus without evidence comes back unchanged."""
    shows: dict[tuple[str, str], set[str]] = {}  # (post id, sentence) -> criteria it is evidence for
    for pair in corpus.pairs:
        if pair.label:
            for sentence in pair.evidence:
                shows.setdefault((pair.post_id, sentence), set()).add(pair.criterion_id)
    if not shows:
        return EvidencePairs(corpus)

    rng = random.Random(seed)
    criterion_ids = [criterion.id for criterion in corpus.criteria]
    posts = dict(corpus.posts)
    pairs = list(corpus.pairs)
    by_post: dict[str, list[int]] = {}
    for number, ((post_id, sentence), met) in enumerate(shows.items()):
        sentence_id = f"{post_id}#evidence{number}"
        posts[sentence_id] = sentence
        unmet = [cid for cid in criterion_ids if cid not in met]
        drawn = rng.sample(unmet, min(negatives, len(unmet)))
        extra = [Pair(sentence_id, cid, 1, (sentence,)) for cid in sorted(met)]
        extra += [Pair(sentence_id, cid, 0) for cid in drawn]
        by_post.setdefault(post_id, []).extend(range(len(pairs), len(pairs) + len(extra)))
        pairs.extend(extra)
    extended = Corpus(posts, corpus.criteria, tuple(pairs), f"{corpus.source} + evidence sentences")
    return EvidencePairs(extended, {post: tuple(indices) for post, indices in by_post.items()})
