"""Augmenters (``[augmenter]``): posts split into evidence and other sentences, seeded copies of
training posts only, with their labels, and each built-in's own promise."""

from __future__ import annotations

import random

import pytest
from builtin_plugins import make, write_tiny_spec
from criteria.data.augment import (
    Post,
    augment_posts,
    posts_of,
    replaceable_words,
    split_sentences,
    with_augmented_posts,
)
from criteria.data.corpus import Corpus, Criterion, Pair
from criteria.data.splits import holdout
from criteria.plugin.registry import get_registry
from criteria.spec.load import load_spec
from criteria.study.prepare import make_job, prepare_data

POSTS = [
    Post("p1", ("I have felt hopeless and empty for months.", "My sister visited on Sunday.",
                "I sleep twelve hours and still wake up exhausted."), (True, False, True)),
    Post("p2", ("Work was busy this week.", "Nothing I used to enjoy interests me anymore.",
                "We watched a film."), (False, True, False)),
]


def test_posts_are_split_into_evidence_and_other_sentences():
    text = "Work was busy. I can't sleep more than three hours a night! We had pizza. I feel worthless."
    sentences, evidence = split_sentences(text, ["I can't sleep more than three hours a night!", "I feel worthless."])
    assert sentences == ("Work was busy.", "I can't sleep more than three hours a night!", "We had pizza.",
                         "I feel worthless.")
    assert evidence == (False, True, False, True)
    assert " ".join(sentences) == text


def test_negations_and_function_words_are_never_replaced():
    words = {w.text for w in replaceable_words("I don't enjoy anything and I never sleep well anymore.")}
    assert words == {"enjoy", "anything", "sleep", "well"}


@pytest.mark.parametrize("name, settings", [
    ("neighbour", {"strength": 0.5}),
    ("synonym", {"strength": 0.5}),
    ("contextual", {"strength": 0.5}),
])
def test_replacing_augmenters_change_evidence_words_only(name, settings):
    from criteria.testing import exercise_plugin

    augment = exercise_plugin(make("augmenter", name, probability=1.0, **settings))
    texts = [augment(post, random.Random(3)) for post in POSTS]
    assert any(texts), f"{name} rewrote none of the posts"
    for post, text in zip(POSTS, texts):
        if text is None:
            continue
        # every sentence that is no evidence comes back as it was
        for sentence, evidence in zip(post.sentences, post.evidence):
            if not evidence:
                assert sentence in text
        assert text != post.text


def test_the_same_seed_gives_the_same_copies_and_another_seed_others():
    augment = make("augmenter", "drop_context", strength=0.5).build(None)
    posts = [Post(f"p{i}", tuple(f"Sentence {j} of post {i}." for j in range(6)), (True,) + (False,) * 5)
             for i in range(20)]
    first = augment_posts(posts, augment, 0.5, seed=1)
    assert first == augment_posts(posts, augment, 0.5, seed=1)
    assert first != augment_posts(posts, augment, 0.5, seed=2)
    assert 4 <= len(first) <= 16  # about half the posts get a copy
    # a post's copy depends on the seed and the post alone, not on the other posts
    assert augment_posts(posts[:5], augment, 0.5, seed=1) == {k: v for k, v in first.items() if k in {p.id for p in posts[:5]}}


def test_removing_context_keeps_every_evidence_sentence():
    augment = make("augmenter", "drop_context", strength=1.0).build(None)
    text = augment(POSTS[0], random.Random(0))
    assert text == "I have felt hopeless and empty for months. I sleep twelve hours and still wake up exhausted."
    assert augment(Post("x", ("No evidence here.", "None at all."), (False, False)), random.Random(0)) is None


def test_copies_keep_their_posts_labels_after_every_existing_pair():
    criteria = (Criterion("A.1", "DEPRESSED_MOOD", "Sad."), Criterion("A.4", "SLEEP_ISSUES", "Sleep."))
    pairs = (Pair("p1", "A.1", 1, ("I feel sad.",)), Pair("p1", "A.4", 0), Pair("p2", "A.1", 0), Pair("p2", "A.4", 1))
    corpus = Corpus({"p1": "I feel sad. Hi.", "p2": "I can't sleep."}, criteria, pairs, "test")
    extended = with_augmented_posts(corpus, {"p1": "I feel sad."})
    assert extended.corpus.pairs[:4] == pairs
    assert [extended.corpus.pairs[i] for i in extended.indices] == [Pair("p1#augmented", "A.1", 1),
                                                                    Pair("p1#augmented", "A.4", 0)]
    assert posts_of(corpus, ["p1"])[0].evidence == (True, False)


def augmenting_job(tmp_path, tiny_bert, train: str = ""):
    """A multilabel job on the tiny model whose every training post gets a drop_context copy."""
    spec = load_spec(write_tiny_spec(tmp_path, tiny_bert, """
[augmenter]
use = "drop_context"
[augmenter.drop_context]
probability = 1.0
[formulation]
use = "multilabel"
""", train=train), get_registry())
    data = prepare_data(spec)
    split = holdout(data.corpus, data.study_indices, 0.2, spec.study.seed)
    return data, split, make_job(spec, data, spec.space.default(), split.train, split.validation)


def test_a_job_augments_its_training_posts_and_nothing_else(tmp_path, tiny_bert, registry):
    data, split, job = augmenting_job(tmp_path, tiny_bert)
    copies = {job.corpus.pairs[i].post_id for i in job.train_indices if "#augmented" in job.corpus.pairs[i].post_id}
    sources = {copy.split("#")[0] for copy in copies}
    training = set(data.corpus.post_ids(split.train))
    assert sources and sources <= training
    held_out = set(data.corpus.post_ids(split.validation)) | set(data.corpus.post_ids(data.test_indices))
    assert not {p.split("#")[0] for p in job.corpus.posts if "#augmented" in p} & held_out
    assert all("#" not in job.corpus.pairs[i].post_id for i in job.validation_indices)
    # the copies are tokenized with the rest: the job's units cover the extended corpus
    assert len(job.encoded.units.pair_unit) == len(job.corpus.pairs)


def test_the_masked_lm_offers_content_words_when_function_words_are_excluded():
    """A masked LM adapted to a small corpus ranks frequent function words first wherever the
    mask is; contextual replacement asks for the best words other than those."""
    import torch
    import transformers
    from criteria.data.augment import STOP_WORDS
    from criteria.engine.masked_lm import MaskedLM
    from criteria.engine.model import load_tokenizer

    tokenizer = load_tokenizer(None)
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37))
    frequent = ["the", "and", "it", "my", "that"]
    with torch.no_grad():
        model.get_output_embeddings().bias[tokenizer.convert_tokens_to_ids(frequent)] = 100.0
    masked_lm = MaskedLM(model, tokenizer, False)
    text = f"I feel so {tokenizer.mask_token} every day."
    assert set(masked_lm.fill([text], 5)[0][0]) == set(frequent)  # all function words
    content = masked_lm.fill([text], 5, exclude=STOP_WORDS)[0][0]
    assert len(content) == 5 and not set(content) & STOP_WORDS


def test_contextual_replacement_puts_in_no_function_words_or_contraction_pieces():
    from criteria.data.augment import AugmentContext

    class FrequentWords:
        """A masked LM adapted to a small corpus: the same frequent words wherever the mask is."""
        mask_token = "[MASK]"

        def fill(self, texts, top_k, exclude=()):
            best = [w for w in ("the", "don", "ve", "sad") if w not in exclude][:top_k]
            return [[best] * text.count(self.mask_token) for text in texts]

    augment = make("augmenter", "contextual", strength=1.0).build(AugmentContext(None, FrequentWords, None))
    text = augment(POSTS[0], random.Random(0))
    assert text is not None
    assert set(text.split()) - set(POSTS[0].text.split()) <= {"sad", "sad.", "Sad"}
    assert " don " not in text and " ve " not in text


def test_augmented_copies_train_beside_evidence_binding(tmp_path, tiny_bert):
    from criteria.engine.fit import fit

    _, _, job = augmenting_job(tmp_path, tiny_bert, train="evidence_loss_weight = 0.5")
    assert job.evidence is not None and any("#augmented" in job.corpus.pairs[i].post_id for i in job.train_indices)
    result = fit(job)
    assert "evidence_mrr" in result.best.metrics["overall"]
