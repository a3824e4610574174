"""Evidence binding: which sentences of a post show that it meets a criterion, learned jointly with
whether it does.

The encoder already reads every token of the post, so the sentence task costs almost nothing on
top of criteria matching: each sentence is the mean of its tokens' last hidden states
(:func:`sentence_states`), and the formulation scores it against each of its unit's output slots
(``FormulationPlugin.evidence_scores``: a linear layer per criterion for ``multilabel``, one score
for the criterion the unit reads for ``pair``, a similarity to the criterion embedding for
``biencoder``). A (post, criterion) pair is scored at its unit and slot, as for criteria matching.

Training: each training pair with annotated evidence (:mod:`criteria.data.sentences`) contributes
a binary cross-entropy over the sentences of its post that the model reads (evidence sentences
1, the post's other sentences 0), averaged per pair, then over pairs; the engine adds it to the
criteria loss as ``criteria_loss_weight * L_criteria + evidence_loss_weight * L_evidence``.
Evaluation: :class:`EvidenceCollector` gathers each pair's sentence probabilities for
:mod:`criteria.engine.evidence_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Container, Mapping

import numpy as np
import torch

from criteria.data.batching import Batch
from criteria.data.corpus import Corpus
from criteria.data.sentences import SentenceIndex, TokenSentences, token_sentences
from criteria.data.tokens import EncodedUnits
from criteria.engine.evidence_metrics import evidence_metrics

__all__ = ["EvidenceCollector", "EvidenceTask", "sentence_states"]


def sentence_states(hidden: torch.Tensor, sentence_ids: torch.Tensor) -> torch.Tensor:
    """``(units, sentences, hidden)``: the mean state of each sentence's tokens (zeros for a
    sentence with no tokens). ``sentence_ids`` ``(units, tokens)`` holds each token's sentence
    or -1; virtual tokens a PEFT method prepends to ``hidden`` belong to no sentence."""
    extra = hidden.shape[1] - sentence_ids.shape[1]
    if extra > 0:
        sentence_ids = torch.cat([sentence_ids.new_full((sentence_ids.shape[0], extra), -1), sentence_ids], dim=1)
    count = max(1, int(sentence_ids.max()) + 1)
    members = (sentence_ids.unsqueeze(1) == torch.arange(count, device=sentence_ids.device).view(1, -1, 1))
    weights = members.to(hidden.dtype)
    tokens = weights.sum(-1, keepdim=True).clamp(min=1)
    return torch.bmm(weights, hidden) / tokens


@dataclass(frozen=True)
class EvidenceTask:
    """Evidence binding on one tokenization: each token's sentence, and the evidence sentences of
    every pair (by index) that has some."""

    tokens: TokenSentences
    gold: Mapping[int, tuple[int, ...]]
    encoded: EncodedUnits

    @classmethod
    def build(cls, tokenizer: Any, encoded: EncodedUnits, corpus: Corpus, index: SentenceIndex,
              max_length: int) -> EvidenceTask:
        """The task for ``encoded`` (the units of ``corpus``): a unit reads the sentences of its
        post when its first text is the post's text (the built-in formulations' units are); the
        pairs of ``index.evidence`` scored from such units are the ones trained and measured."""
        units = encoded.units
        post_of: dict[int, str] = {}
        for i, pair in enumerate(corpus.pairs):
            post_of.setdefault(int(units.pair_unit[i]), pair.post_id)
        spans: list[Any] = [None] * len(units)
        for unit, post in post_of.items():
            if post in index.spans and units.first[unit] == corpus.posts.get(post):
                spans[unit] = index.spans[post]
        tokens = token_sentences(tokenizer, units, max_length, spans, encoded.offsets)
        gold = {}
        for i, pair in enumerate(corpus.pairs):
            sentences = index.evidence.get((pair.post_id, pair.criterion_id))
            if sentences and spans[int(units.pair_unit[i])] is not None:
                gold[i] = sentences
        return cls(tokens, gold, encoded)

    def sentence_ids(self, batch: Batch) -> torch.Tensor:
        """Each token's sentence in ``batch`` (``(units, tokens)``, -1: none), on its device."""
        width = batch.input_ids.shape[1]
        units = batch.units.cpu().tolist()
        out = np.full((len(units), width), -1, dtype=np.int64)
        for row, unit in enumerate(units):
            values = self.tokens.unit(unit)
            out[row, : len(values)] = values
        return torch.from_numpy(out).to(batch.input_ids.device)

    def loss(self, batch: Batch, sentence_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        """The evidence loss of the batch's pairs that have evidence among the sentences read
        (``logits``: the model's ``(units, sentences, slots)`` evidence output), or None."""
        chosen, targets = [], []
        count = logits.shape[1]
        read = _sentences_read(sentence_ids, count)
        for position, index in enumerate(batch.indices.tolist()):
            gold = self.gold.get(index)
            if not gold:
                continue
            target = torch.zeros(count, dtype=torch.float32)
            target[[g for g in gold if g < count]] = 1.0
            row = int(batch.rows[position])
            if bool((target.to(read.device).bool() & read[row]).any()):  # an evidence sentence was read
                chosen.append(position)
                targets.append(target)
        if not chosen:
            return None
        positions = torch.as_tensor(chosen, device=logits.device)
        rows, slots = batch.rows[positions], batch.slots[positions]
        scores = logits[rows, :, slots].float()  # (pairs, sentences)
        mask = read[rows].to(scores.dtype)
        target = torch.stack(targets).to(scores.device)
        each = torch.nn.functional.binary_cross_entropy_with_logits(scores, target, reduction="none")
        return ((each * mask).sum(1) / mask.sum(1)).mean()

    def collector(self, pairs: Container[int] | None = None) -> EvidenceCollector:
        """Gathers sentence probabilities of ``pairs`` (default: the pairs with evidence)."""
        return EvidenceCollector(self, self.gold if pairs is None else pairs)


def _sentences_read(sentence_ids: torch.Tensor, count: int) -> torch.Tensor:
    """``(units, count)``: whether each sentence has a token in each unit."""
    members = sentence_ids.unsqueeze(1) == torch.arange(count, device=sentence_ids.device).view(1, -1, 1)
    return members.any(-1)


class EvidenceCollector:
    """Collects, batch by batch, the probability that each sentence of a pair's post is evidence
    (NaN for sentences the model did not read)."""

    def __init__(self, task: EvidenceTask, pairs: Container[int]) -> None:
        self.task, self.pairs = task, pairs
        self.probs: dict[int, np.ndarray] = {}

    def sentence_ids(self, batch: Batch) -> torch.Tensor:
        return self.task.sentence_ids(batch)

    def collect(self, batch: Batch, sentence_ids: torch.Tensor, logits: torch.Tensor) -> None:
        count = logits.shape[1]
        read = _sentences_read(sentence_ids, count).cpu().numpy()
        probs = torch.sigmoid(logits.float()).cpu().numpy()
        units = batch.units.cpu().numpy()
        for position, (index, row, slot) in enumerate(zip(batch.indices.tolist(), batch.rows.tolist(),
                                                          batch.slots.tolist())):
            sentences = int(self.task.tokens.counts[units[row]])
            if index not in self.pairs or not sentences:
                continue
            out = np.full(sentences, np.nan)
            seen = min(sentences, count)
            out[:seen] = np.where(read[row, :seen], probs[row, :seen, slot], np.nan)
            self.probs[index] = out

    def metrics(self, corpus: Corpus) -> dict[str, dict]:
        """:func:`~criteria.engine.evidence_metrics.evidence_metrics` of the collected pairs."""
        groups = {index: corpus.pairs[index].criterion_id for index in self.probs}
        return evidence_metrics(self.probs, self.task.gold, groups)

    def add_metrics(self, metrics: dict[str, Any], corpus: Corpus) -> None:
        """Add the evidence metrics to an :func:`~criteria.engine.metrics.evaluate` result: overall
        beside the criteria metrics (so they are tracked like them), and per criterion."""
        found = self.metrics(corpus)
        metrics["overall"].update(found["overall"])
        for group, values in found["per_group"].items():
            metrics["per_group"].setdefault(group, {}).update(values)
