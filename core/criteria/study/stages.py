"""What runs before a trial trains on a split: continued pretraining (``[pretrain]``) and
augmentation (``[augmenter]``). Both read the split's **training posts only**: TAPT pretrains on
their text, augmenters rewrite them; no validation or test post is pretrained on or augmented.

Pretraining is cached on disk per stage key (:mod:`criteria.engine.pretraining`), so trials and
later runs that share a configuration pretrain once; each trial records whether its encoder came
from the cache (:data:`PRETRAINED_ATTR`), which :func:`pretraining_counts` adds up. Augmented
texts are kept in memory for the study, per augmenter configuration and split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from criteria.data.augment import AugmentContext, augment_posts, posts_of, with_augmented_posts
from criteria.data.corpus import Corpus
from criteria.data.texts import load_texts
from criteria.engine.config import PretrainConfig, TrialConfig
from criteria.engine.pretraining import AdaptedEncoder, adapt_encoder
from criteria.spec.load import Spec

__all__ = ["PRETRAINED_ATTR", "StagedSplit", "pretraining_counts", "pretraining_texts", "run_stages"]

#: Optuna user attribute: per fold, the adapted encoder's key and whether it came from the cache.
PRETRAINED_ATTR = "pretrained"


@dataclass(frozen=True)
class StagedSplit:
    """What a split trains on after the stages: ``corpus`` (the study's corpus with evidence
    sentences, plus augmented copies), ``augmented`` (the copies' pair indices: the split's
    training posts only), and ``model_name`` (the adapted encoder's folder when the pretraining
    stage ran, else the spec's model) with the stage's record."""

    corpus: Corpus
    augmented: tuple[int, ...]
    augmented_posts: int
    model_name: str | None
    pretrained: AdaptedEncoder | None


def training_post_ids(corpus: Corpus, train_idx: Sequence[int]) -> list[str]:
    """The posts of the training pairs, each once, in corpus order of first appearance."""
    return list(dict.fromkeys(corpus.post_ids(train_idx)))


def pretraining_texts(config: PretrainConfig, corpus: Corpus, train_idx: Sequence[int],
                      domain: Sequence[str] = ()) -> list[str]:
    """What the stage reads: the domain corpus (``domain``, DAPT) when the config names one,
    then, with ``tapt``, the text of each training post of the split (TAPT)."""
    texts = list(domain) if config.corpus is not None else []
    if config.tapt:
        texts += [corpus.posts[post] for post in training_post_ids(corpus, train_idx)]
    return texts


def run_stages(spec: Spec, data: Any, config: TrialConfig, train_idx: Sequence[int], runtime: Any,
               announce: Callable[[str], None] | None = None) -> StagedSplit:
    """Run the trial's stages for the split whose training pairs are ``train_idx`` (pairs of
    ``data.corpus``); ``announce`` hears one line per stage that did something."""
    cache = data.stage_cache
    seed = spec.study.seed
    model_name = spec.model.name
    runtime = runtime or config.backend.build()
    corpus = data.evidence.corpus
    pretrained = None
    stage = config.pretraining
    if stage is not None:
        texts = pretraining_texts(stage, data.corpus, train_idx, _domain_texts(cache, stage))
        pretrained = adapt_encoder(model_name, data.tokenizer, texts, stage, config.masking, runtime, seed)
        if announce:
            announce(pretrained.describe())

    augment = config.augmenter.build(_augment_context(spec, data, config, train_idx, runtime, pretrained, announce))
    copies: dict[str, str] = {}
    if augment is not None:
        posts = training_post_ids(data.corpus, train_idx)
        key = (config.augmenter.name, repr(config.augmenter.config), seed,
               pretrained.key if pretrained else model_name, hashlib.sha256("|".join(posts).encode()).hexdigest())
        if key not in cache:
            cache[key] = augment_posts(posts_of(data.corpus, posts), augment, config.augmenter.probability, seed)
        copies = cache[key]
        if announce:
            announce(f"augmentation ({config.augmenter.name}): {len(copies)} of {len(posts)} training posts copied")
    extended = with_augmented_posts(corpus, copies)
    return StagedSplit(extended.corpus, extended.indices, len(copies),
                       pretrained.location if pretrained else model_name, pretrained)


def _domain_texts(cache: dict, stage: PretrainConfig) -> tuple[str, ...]:
    """The DAPT corpus's texts, read once per study."""
    if stage.corpus is None:
        return ()
    key = ("domain", str(stage.corpus), stage.text_column)
    if key not in cache:
        cache[key] = load_texts(stage.corpus, stage.text_column)
    return cache[key]


def _augment_context(spec: Spec, data: Any, config: TrialConfig, train_idx: Sequence[int], runtime: Any,
                     pretrained: AdaptedEncoder | None, announce: Callable[[str], None] | None) -> AugmentContext:
    """What an augmenter may ask for, each made on first use: the masked LM of the trial's stage
    (or, without one, of the stage at its defaults on the split's training posts, so contextual
    replacement always has an adapted MLM), and the input embeddings of the encoder the trial
    fine-tunes."""
    model_name = pretrained.location if pretrained else spec.model.name

    def masked_lm() -> Any:
        from criteria.engine.masked_lm import load_masked_lm

        adapted = pretrained
        if adapted is None:
            defaults = PretrainConfig()
            texts = pretraining_texts(defaults, data.corpus, train_idx)
            adapted = adapt_encoder(spec.model.name, data.tokenizer, texts, defaults, config.masking, runtime,
                                    spec.study.seed)
            if announce:
                announce(f"the masked LM for augmentation: {adapted.describe()}")
        model = load_masked_lm(adapted.location, data.tokenizer, runtime)
        model.model.to(runtime.device)
        return model

    def input_embeddings() -> tuple[list[str], Any]:
        from criteria.engine.masked_lm import whole_word_vocabulary
        from criteria.engine.model import load_encoder

        encoder = load_encoder(model_name, hidden_dropout=0.0, attention_dropout=0.0)
        words, vectors = whole_word_vocabulary(encoder, data.tokenizer)
        return words, vectors.numpy()

    return AugmentContext(data.tokenizer, masked_lm, input_embeddings)


def pretraining_counts(trials: Sequence[Any]) -> dict[str, int]:
    """Over a study's trials: how many adapted encoders they used (one per trial and fold that ran
    the stage), how many of those were pretrained and how many came from the cache."""
    records = [r for t in trials for r in t.user_attrs.get(PRETRAINED_ATTR, ())]
    cached = sum(1 for r in records if r["cached"])
    return {"used": len(records), "pretrained": len(records) - cached, "cached": cached}
