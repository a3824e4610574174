"""Scoring pairs with a trained classifier: positive-class probabilities, in length-sorted batches."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from criteria.data.batching import iterate, sorted_batches
from criteria.data.tokens import EncodedPairs
from criteria.engine.progress import FitProgress

__all__ = ["predict_probs"]


def predict_probs(model: nn.Module, runtime: Any, encoded: EncodedPairs, indices: np.ndarray,
                  labels: Sequence[int] | None, pad_token_id: int, batch_size: int,
                  loss_fn: nn.Module | None = None, progress: FitProgress | None = None,
                  ) -> tuple[np.ndarray, float]:
    """Positive-class probabilities for ``indices`` (in that order), and the mean loss if asked;
    ``progress`` hears of each batch."""
    model.eval()
    labels = labels if labels is not None else [0] * len(encoded)
    probs = np.zeros(len(indices), dtype=np.float64)
    where = {int(index): row for row, index in enumerate(indices)}
    batches = [indices[p] for p in sorted_batches(encoded.lengths[indices], batch_size)]
    if progress:
        progress.validation_started(len(batches))
    total_loss = 0.0
    with torch.inference_mode():
        for batch in iterate(encoded, batches, labels, pad_token_id):
            batch = batch.to(runtime.device)
            with runtime.autocast():
                logits = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            logits = logits.float()
            if loss_fn is not None:
                total_loss += float(loss_fn(logits, batch.labels)) * len(batch.labels)
            batch_probs = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
            for index, p in zip(batch.indices.cpu().tolist(), batch_probs):
                probs[where[index]] = p
            if progress:
                progress.validation_step()
    return probs, total_loss / max(1, len(indices))
