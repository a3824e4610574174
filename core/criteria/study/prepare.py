"""A spec's data, prepared once for every trial and fold: corpus, tokens, held-out test posts;
jobs for the engine, and scoring a model or the TF-IDF baseline on chosen pairs.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from criteria.data.corpus import Corpus
from criteria.data.evidence import EvidencePairs, with_evidence_pairs
from criteria.data.sentences import SentenceIndex, locate_evidence
from criteria.data.sources import load_corpus
from criteria.data.splits import test_split
from criteria.data.tokens import EncodedUnits, encode_units
from criteria.engine.config import TrialConfig
from criteria.engine.evidence import EvidenceTask
from criteria.engine.inference import predict_probs
from criteria.engine.job import TrainingJob, check_trainable
from criteria.engine.metrics import evaluate
from criteria.engine.model import load_tokenizer
from criteria.engine.runtime import Runtime
from criteria.errors import CriteriaWarning
from criteria.plugin.kinds import FormulationPlugin
from criteria.spec.load import Spec
from criteria.study.stages import run_stages

__all__ = ["PreparedData", "baseline_metrics", "evaluate_indices", "make_job", "prepare_data"]


@dataclass
class PreparedData:
    corpus: Corpus  # the data as loaded: splits, metrics and the baseline use it
    tokenizer: Any
    max_length: int
    study_indices: tuple[int, ...]  # everything but the held-out test posts
    test_indices: tuple[int, ...]
    evidence: EvidencePairs  # the corpus plus its evidence-sentence pairs, which only training sees
    sentences: SentenceIndex  # the posts' sentences and each met pair's evidence among them (evidence binding)
    # what the stages before training keep for the whole study (criteria.study.stages)
    stage_cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    _encodings: OrderedDict[str, EncodedUnits] = field(default_factory=OrderedDict, repr=False)
    _evidence_tasks: OrderedDict[str, EvidenceTask] = field(default_factory=OrderedDict, repr=False)

    def encode(self, formulation: FormulationPlugin, corpus: Corpus | None = None) -> EncodedUnits:
        """Token ids of ``formulation``'s units for every pair of ``corpus`` (default:
        ``evidence.corpus``, whose own pairs come first under the same indices), tokenized once
        per formulation and corpus, and cached on disk for later runs."""
        corpus = corpus or self.evidence.corpus
        units = formulation.units(corpus)
        key = units.sha256
        if key not in self._encodings:
            self._encodings[key] = encode_units(self.tokenizer, units, self.max_length, corpus=corpus)
            while len(self._encodings) > 8:  # augmented corpora differ per trial: keep the recent ones
                self._encodings.popitem(last=False)
        self._encodings.move_to_end(key)
        return self._encodings[key]

    def evidence_gold(self) -> dict[int, tuple[int, ...]]:
        """The evidence sentences (indices into their post's sentences) of each met pair of the
        corpus that has some, by pair index."""
        return {i: self.sentences.evidence[(p.post_id, p.criterion_id)] for i, p in enumerate(self.corpus.pairs)
                if (p.post_id, p.criterion_id) in self.sentences.evidence}

    def evidence_task(self, formulation: FormulationPlugin, corpus: Corpus | None = None) -> EvidenceTask | None:
        """Evidence binding on ``formulation``'s units of ``corpus`` (default: ``evidence.corpus``;
        a corpus extended by augmented copies has units of its own): each token's sentence, each
        pair's evidence; built once per formulation and corpus; None when the data has no sentence
        evidence. Augmented copies have no located sentences: they train criteria matching only."""
        if not self.sentences:
            return None
        corpus = corpus or self.evidence.corpus
        encoded = self.encode(formulation, corpus)
        if encoded.key not in self._evidence_tasks:
            self._evidence_tasks[encoded.key] = EvidenceTask.build(self.tokenizer, encoded, corpus, self.sentences,
                                                                   self.max_length)
            while len(self._evidence_tasks) > 8:  # as for the encodings: augmented corpora differ per trial
                self._evidence_tasks.popitem(last=False)
        self._evidence_tasks.move_to_end(encoded.key)
        return self._evidence_tasks[encoded.key]


def prepare_data(spec: Spec) -> PreparedData:
    corpus = load_corpus(spec.data, spec.path.parent)
    tokenizer = load_tokenizer(spec.model.name)
    evidence = with_evidence_pairs(corpus, spec.data.evidence_negatives, spec.study.seed)
    rest, test = test_split(corpus, spec.data.test_fraction, spec.study.seed)
    sentences = locate_evidence(corpus)
    if sentences.unlocated:
        warnings.warn(f"{sentences.unlocated} annotated sentence(s) are not found verbatim in their posts; evidence "
                      "binding leaves them out", CriteriaWarning, stacklevel=2)
    return PreparedData(corpus, tokenizer, spec.data.max_length, tuple(rest), tuple(test), evidence, sentences)


def make_job(spec: Spec, data: PreparedData, config: TrialConfig, train_idx, val_idx, *,
             announce: Callable[[str], None] | None = None, **kwargs: Any) -> TrainingJob:
    """A job for the engine: ``config`` trained on ``train_idx`` (plus their posts' evidence
    sentences when asked, and their augmented copies) and validated on ``val_idx``, from the
    encoder the pretraining stage adapted when it runs (:mod:`criteria.study.stages`;
    ``announce`` hears what the stages did); ``kwargs`` go to the job (runtime, callbacks)."""
    staged = run_stages(spec, data, config, train_idx, kwargs.get("runtime"), announce)
    train_idx = list(train_idx)
    if config.train.evidence_sentences:
        train_idx += data.evidence.for_posts(set(data.corpus.post_ids(train_idx)))
    train_idx += staged.augmented
    _warn_single_class_criteria(data.evidence.corpus, val_idx)
    job = TrainingJob(
        corpus=staged.corpus, encoded=data.encode(config.formulation, staged.corpus), train_indices=train_idx,
        validation_indices=val_idx, pretrained=staged.pretrained,
        config=config, model_name=staged.model_name, pad_token_id=data.tokenizer.pad_token_id or 0,
        mask_token_id=_mask_token_id(data.tokenizer), special_token_ids=tuple(data.tokenizer.all_special_ids),
        metric=spec.study.metric, direction=spec.study.direction, seed=spec.study.seed,
        tune_threshold=config.train.tune_threshold, reports_per_epoch=spec.study.reports_per_epoch,
        evidence=data.evidence_task(config.formulation, staged.corpus) if config.train.evidence_loss_weight > 0
        else None, **kwargs,
    )
    check_trainable(job)
    return job


def _warn_single_class_criteria(corpus: Corpus, indices: Any) -> None:
    """One line naming the criteria whose validation pairs hold a single class: their
    per-criterion scores are undefined (AUC) or degenerate (F1), which is no bug to report."""
    classes: dict[str, set[int]] = {}
    for index in indices:
        pair = corpus.pairs[index]
        classes.setdefault(pair.criterion_id, set()).add(pair.label)
    single = [f"{cid} ({corpus.criterion(cid).name}: {'only met' if labels == {1} else 'no met'} pairs)"
              for cid, labels in sorted(classes.items()) if len(labels) == 1]
    if single:
        warnings.warn(f"the validation split has a single class for {len(single)} criteri"
                      f"{'on' if len(single) == 1 else 'a'}: {', '.join(single)}; their per-criterion F1 and AUC "
                      "say little (more posts, or data.split = \"kfold\", help)", CriteriaWarning, stacklevel=3)


def _mask_token_id(tokenizer: Any) -> int | None:
    """The token that token dropout writes: the mask token, else the unknown token."""
    for token_id in (tokenizer.mask_token_id, tokenizer.unk_token_id):
        if token_id is not None:
            return token_id
    return None


def evaluate_indices(model: Any, data: PreparedData, config: TrialConfig, runtime: Runtime, indices,
                     threshold: float) -> tuple[dict, np.ndarray, list[int]]:
    """Metrics of ``model`` (trained with ``config``) on the pairs at ``indices``, with the
    probabilities and labels behind them."""
    labels = data.corpus.labels
    idx = np.asarray(indices)
    task = data.evidence_task(config.formulation) if getattr(model, "evidence", None) is not None else None
    evidence = task.collector() if task is not None else None
    probs, _ = predict_probs(model.to(runtime.device), runtime, data.encode(config.formulation), idx, labels,
                             data.tokenizer.pad_token_id or 0, config.train.eval_batch_size, evidence=evidence)
    wanted = [labels[i] for i in idx]
    groups = [data.corpus.pairs[i].criterion_id for i in idx]
    metrics = evaluate(wanted, probs, groups, threshold)
    if evidence is not None:
        evidence.add_metrics(metrics, data.evidence.corpus)
    return metrics, probs, wanted


def baseline_metrics(corpus: Corpus, train_idx, eval_idx, seed: int) -> dict[str, Any]:
    """TF-IDF + logistic regression trained on ``train_idx`` and scored on ``eval_idx``."""
    from criteria.engine.baseline import tfidf_baseline

    def columns(indices):
        pairs = [corpus.pairs[i] for i in indices]
        return [corpus.text(p) for p in pairs], [p.criterion_id for p in pairs], [p.label for p in pairs]

    train_texts, train_groups, train_labels = columns(train_idx)
    eval_texts, eval_groups, eval_labels = columns(eval_idx)
    probs = tfidf_baseline(train_texts, train_groups, train_labels, eval_texts, eval_groups, seed=seed)
    return evaluate(eval_labels, probs, eval_groups)
