"""Evidence sentences as extra training pairs: built right, and never leaking across a split."""

from __future__ import annotations

from pathlib import Path

import pytest
from criteria.data.corpus import Corpus, Criterion, Pair
from criteria.data.evidence import with_evidence_pairs
from criteria.data.loaders import embedded_corpus
from criteria.data.splits import holdout
from criteria.plugin.registry import get_registry
from criteria.spec.load import load_spec
from criteria.study.prepare import make_job, prepare_data


def small_corpus() -> Corpus:
    criteria = tuple(Criterion(f"A.{i}", f"C{i}", f"criterion {i}") for i in (1, 2, 3))
    posts = {"p1": "I cannot sleep. I feel empty. I like cats.", "p2": "Work was fine today."}
    pairs = (
        Pair("p1", "A.1", 1, ("I feel empty.",)),
        Pair("p1", "A.2", 1, ("I cannot sleep.", "I feel empty.")),
        Pair("p1", "A.3", 0),
        Pair("p2", "A.1", 0), Pair("p2", "A.2", 0), Pair("p2", "A.3", 0),
    )
    return Corpus(posts, criteria, pairs, "small")


def test_each_sentence_is_met_for_its_criteria_and_not_met_for_others():
    corpus = small_corpus()
    evidence = with_evidence_pairs(corpus, negatives=5, seed=0)
    extended = evidence.corpus
    assert extended.pairs[: len(corpus.pairs)] == corpus.pairs  # original indices keep their meaning
    extra = extended.pairs[len(corpus.pairs):]
    by_sentence: dict[str, dict[str, int]] = {}
    for pair in extra:
        by_sentence.setdefault(extended.text(pair), {})[pair.criterion_id] = pair.label
    assert by_sentence == {
        "I feel empty.": {"A.1": 1, "A.2": 1, "A.3": 0},  # one sentence, two criteria: one entry
        "I cannot sleep.": {"A.2": 1, "A.1": 0, "A.3": 0},
    }
    assert set(evidence.by_post) == {"p1"}
    assert evidence.for_posts({"p2"}) == []
    assert evidence.for_posts({"p1", "p2"}) == list(range(len(corpus.pairs), len(extended.pairs)))


def test_negatives_are_capped_and_seeded():
    corpus = small_corpus()
    none = with_evidence_pairs(corpus, negatives=0, seed=0).corpus
    assert all(pair.label == 1 for pair in none.pairs[len(corpus.pairs):])
    one = [with_evidence_pairs(corpus, negatives=1, seed=seed).corpus.pairs for seed in (0, 0)]
    assert one[0] == one[1]


def test_a_corpus_without_evidence_comes_back_unchanged():
    corpus = small_corpus()
    plain = Corpus(corpus.posts, corpus.criteria,
                   tuple(Pair(p.post_id, p.criterion_id, p.label) for p in corpus.pairs), "plain")
    assert with_evidence_pairs(plain, negatives=3, seed=0).corpus is plain


def test_the_embedded_corpus_gives_every_positive_its_sentences():
    corpus = embedded_corpus()
    evidence = with_evidence_pairs(corpus, negatives=3, seed=13)
    extra = evidence.corpus.pairs[len(corpus.pairs):]
    positives = {(p.post_id, p.criterion_id) for p in corpus.pairs if p.label}
    covered = {(post, evidence.corpus.pairs[i].criterion_id)
               for post, indices in evidence.by_post.items() for i in indices if evidence.corpus.pairs[i].label}
    assert covered == positives
    assert sum(p.label == 0 for p in extra) > 0


@pytest.mark.parametrize("enabled", [True, False])
def test_training_adds_only_its_own_posts_sentences(tiny_bert, tmp_path: Path, enabled: bool):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(f"""
[study]
name = "evidence"
[data]
max_length = 64
[model]
name = "{tiny_bert}"
[train]
evidence_sentences = {str(enabled).lower()}
""")
    spec = load_spec(spec_file, get_registry())
    data = prepare_data(spec)
    split = holdout(data.corpus, data.study_indices, 0.25, 0)
    job = make_job(spec, data, spec.space.default(), split.train, split.validation)

    train_posts = set(data.corpus.post_ids(split.train))
    source = {i: post for post, indices in data.evidence.by_post.items() for i in indices}
    extra = [i for i in job.train_indices if i >= len(data.corpus.pairs)]
    assert bool(extra) == enabled
    assert {source[i] for i in extra} <= train_posts  # no validation or test post's sentence is trained on
    if enabled:
        assert {source[i] for i in extra} == train_posts & set(data.evidence.by_post)
    assert list(job.validation_indices) == list(split.validation)
    encoded = data.encode(spec.space.default().formulation)
    assert len(encoded.units.pair_unit) == len(data.evidence.corpus.pairs)
