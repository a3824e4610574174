"""Posts cut into sentences, annotated evidence located among them, tokens mapped to sentences."""

from __future__ import annotations

import numpy as np
import pytest
from criteria.data.corpus import Corpus, Criterion, Pair
from criteria.data.loaders import embedded_corpus
from criteria.data.sentences import locate_evidence, split_sentences, token_sentences
from criteria.data.tokens import encode_units
from criteria.data.units import pair_units, post_units


def texts(text: str, spans) -> list[str]:
    return [text[a:b] for a, b in spans]


def test_the_rule_breaks_after_end_punctuation_and_keeps_closing_quotes():
    text = 'I can\'t sleep. "Why me?" she asked! Nothing helps anymore (really.) ok'
    assert texts(text, split_sentences(text)) == [
        "I can't sleep.", '"Why me?"', "she asked!", "Nothing helps anymore (really.)", "ok"]


def test_an_annotated_sentence_stays_whole_where_the_rule_would_cut_it():
    text = "I saw Dr. Lee today. I feel empty. Then I slept."
    assert texts(text, split_sentences(text)) == ["I saw Dr.", "Lee today.", "I feel empty.", "Then I slept."]
    assert texts(text, split_sentences(text, ["I saw Dr. Lee today."])) == [
        "I saw Dr. Lee today.", "I feel empty.", "Then I slept."]


def small_corpus() -> Corpus:
    criteria = tuple(Criterion(f"A.{i}", f"C{i}", f"criterion {i}") for i in (1, 2))
    posts = {"p1": "I saw Dr. Lee today. I feel empty. I cannot sleep.", "p2": "All good here."}
    pairs = (Pair("p1", "A.1", 1, ("I feel empty.", "I saw Dr. Lee today.")),
             Pair("p1", "A.2", 1, ("I cannot sleep.", "a sentence that is not in the post")),
             Pair("p2", "A.1", 0), Pair("p2", "A.2", 0))
    return Corpus(posts, criteria, pairs, "small")


def test_evidence_is_located_among_the_sentences_and_missing_sentences_are_counted():
    index = locate_evidence(small_corpus())
    assert index.sentences("p1", small_corpus().posts["p1"]) == ["I saw Dr. Lee today.", "I feel empty.",
                                                                 "I cannot sleep."]
    assert index.evidence == {("p1", "A.1"): (0, 1), ("p1", "A.2"): (2,)}
    assert index.unlocated == 1
    assert len(index.spans["p2"]) == 1


def test_every_met_pair_of_the_embedded_corpus_has_its_evidence_located():
    corpus = embedded_corpus()
    index = locate_evidence(corpus)
    assert index.unlocated == 0
    assert set(index.evidence) == {(p.post_id, p.criterion_id) for p in corpus.pairs if p.label}
    # the annotations follow the release's numbering: anchoring changes no post's sentences
    assert all(split_sentences(corpus.posts[post]) == spans for post, spans in index.spans.items())


@pytest.fixture(scope="module")
def tokenizer():
    import transformers
    from criteria.engine.model_source import embedded_model_path

    return transformers.AutoTokenizer.from_pretrained(embedded_model_path())


@pytest.mark.parametrize("make_units", [pair_units, post_units])
def test_each_post_token_carries_its_sentence_and_nothing_else_does(tokenizer, make_units):
    corpus = small_corpus()
    index = locate_evidence(corpus)
    units = make_units(corpus)
    encoded = encode_units(tokenizer, units, 64, use_cache=False)
    post_of = {int(units.pair_unit[i]): p.post_id for i, p in enumerate(corpus.pairs)}
    spans = [index.spans[post_of[u]] for u in range(len(units))]
    mapped = token_sentences(tokenizer, units, 64, spans, encoded.offsets)
    for unit in range(len(units)):
        ids, segments = encoded.unit(unit)
        sentence = mapped.unit(unit)
        text = corpus.posts[post_of[unit]]
        for s, (a, b) in enumerate(index.spans[post_of[unit]]):
            words = tokenizer.decode(ids[sentence == s]).replace(" ", "")
            assert words == text[a:b].lower().replace(" ", "")  # the uncased tokenizer lowercases
        # special tokens and the criterion text belong to no sentence
        assert all(sentence[ids == tid].max() == -1 for tid in tokenizer.all_special_ids if (ids == tid).any())
        assert (sentence[segments == 1] == -1).all()
        assert mapped.counts[unit] == len(index.spans[post_of[unit]])


def test_sentences_past_max_length_have_no_tokens(tokenizer):
    corpus = small_corpus()
    index = locate_evidence(corpus)
    units = post_units(corpus)
    encoded = encode_units(tokenizer, units, 10, use_cache=False)  # p1 is cut inside its second sentence
    mapped = token_sentences(tokenizer, units, 10, [index.spans["p1"], index.spans["p2"]], encoded.offsets)
    seen = set(np.unique(mapped.unit(0)).tolist()) - {-1}
    assert seen == {0, 1} and mapped.counts[0] == 3
