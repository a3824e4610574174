"""torch modules behind the built-in heads and losses. Imported only from ``build`` methods."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class ClsLinearHead(nn.Module):
    """Dropout and a linear layer on the first ([CLS]) token."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.dropout(hidden_states[:, 0]))


def inverse_frequency_weights(class_counts: Sequence[int]) -> torch.Tensor:
    """Per-class weights n / (k * count): 1 / frequency, averaging 1 when every class is present;
    a class with no examples gets 0."""
    counts = torch.as_tensor(class_counts, dtype=torch.float32)
    weights = torch.where(counts > 0, counts.sum() / (len(counts) * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): cross entropy down-weighted on easy examples by (1 - p_t)^gamma."""

    def __init__(self, gamma: float, alpha: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", alpha if alpha is not None else None)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits.float(), dim=-1)
        log_pt = log_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.alpha is not None:
            loss = loss * self.alpha.to(loss.device)[labels]
        return loss.mean()
