"""Scoring pairs with a trained classifier: positive-class probabilities, in length-sorted batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from criteria.data.batching import Batch, UnitPairs, iterate, sorted_batches
from criteria.data.tokens import EncodedPairs
from criteria.engine.progress import FitProgress

if TYPE_CHECKING:  # pragma: no cover
    from criteria.engine.evidence import EvidenceCollector

__all__ = ["predict_probs"]


def predict_probs(model: nn.Module, runtime: Any, encoded: EncodedPairs, indices: np.ndarray,
                  labels: Sequence[int] | None, pad_token_id: int, batch_size: int,
                  loss_fn: nn.Module | None = None, progress: FitProgress | None = None,
                  before_forward: Callable[[Batch], None] | None = None,
                  evidence: EvidenceCollector | None = None) -> tuple[np.ndarray, float]:
    """Positive-class probabilities for the pairs at ``indices`` (in that order), and their mean
    loss if asked; ``progress`` hears of each batch. ``batch_size`` counts units (the encoder's
    inputs): each scores its pairs among ``indices``. ``before_forward(batch)`` runs before each
    forward pass (the frozen-layer cache feeds the batch's states there). ``evidence`` collects
    the sentence probabilities of evidence binding in the same passes."""
    model.eval()
    indices = np.asarray(indices)
    labels = labels if labels is not None else [0] * len(encoded.units.pair_unit)
    probs = np.zeros(len(indices), dtype=np.float64)
    where = {int(index): row for row, index in enumerate(indices)}
    members = UnitPairs.of(encoded.units, indices)
    batches = sorted_batches(encoded.lengths[members.units], batch_size)
    if progress:
        progress.validation_started(len(batches))
    total_loss = 0.0
    with torch.inference_mode():
        for batch in iterate(encoded, batches, labels, pad_token_id, members):
            batch = batch.to(runtime.device)
            if before_forward is not None:
                before_forward(batch)
            with runtime.autocast():
                if evidence is None:
                    out = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
                else:
                    sentence_ids = evidence.sentence_ids(batch)
                    out, sentence_logits = model(batch.input_ids, batch.attention_mask, batch.token_type_ids,
                                                 sentence_ids=sentence_ids)
                    evidence.collect(batch, sentence_ids, sentence_logits)
                logits = batch.pair_logits(out)
            logits = logits.float()
            if loss_fn is not None:
                total_loss += float(loss_fn(logits, batch.labels)) * len(batch.labels)
            batch_probs = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
            for index, p in zip(batch.indices.cpu().tolist(), batch_probs):
                probs[where[index]] = p
            if progress:
                progress.validation_step()
    return probs, total_loss / max(1, len(indices))
