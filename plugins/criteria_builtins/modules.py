"""torch modules behind the built-in heads and losses. Imported only from ``build`` methods.

Every head is called as ``head(hidden_states, attention_mask)``: hidden states ``(batch, seq,
hidden)`` and a mask ``(batch, seq)`` in which 0 marks padding. Padding never contributes to a
pooled vector, and pooling runs in fp32 whatever dtype autocast gives the hidden states, so sums
and softmaxes over long sequences keep their precision under bf16.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

# --- pooling: (batch, seq, hidden) + mask -> (batch, hidden) --------------------------------


def _keep(attention_mask: torch.Tensor) -> torch.Tensor:
    """The mask as booleans shaped to broadcast over the hidden dimension."""
    return attention_mask.bool().unsqueeze(-1)


class ClsPooling(nn.Module):
    """The first ([CLS]) token; the mask is not needed (position 0 is never padding)."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return hidden_states[:, 0]


class MeanPooling(nn.Module):
    """The mean over real tokens."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = _keep(attention_mask)
        # masked_fill, not a product: whatever sits in padded positions cannot leak in.
        total = hidden_states.float().masked_fill(~keep, 0.0).sum(dim=1)
        return total / keep.sum(dim=1).clamp(min=1)


class MaxPooling(nn.Module):
    """The element-wise maximum over real tokens."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden_states.float()
        # The lowest finite value rather than -inf: a row with no real token gives a finite vector.
        return hidden.masked_fill(~_keep(attention_mask), torch.finfo(hidden.dtype).min).amax(dim=1)


class AttentionPooling(nn.Module):
    """A weighted mean over real tokens, the weights a softmax of learned per-token scores.

    The scorer has no bias: softmax ignores a constant added to every score."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.scorer = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        scores = self.scorer(hidden_states).squeeze(-1).float()
        scores = scores.masked_fill(~attention_mask.bool(), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).unsqueeze(-1)
        return (weights * hidden_states.float()).sum(dim=1)


class FirstTokenPooler(nn.Module):
    """BERT's pooler (dense + tanh on the first token), for encoders that have none of their own."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


# --- heads ----------------------------------------------------------------------------------


class PooledHead(nn.Module):
    """``pool`` the tokens, then dropout and ``classifier``."""

    def __init__(self, pool: nn.Module, classifier: nn.Module, dropout: float) -> None:
        super().__init__()
        self.pool = pool
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(hidden_states, attention_mask)))


class ClsLinearHead(PooledHead):
    """Dropout and a linear layer on the first ([CLS]) token."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__(ClsPooling(), nn.Linear(hidden_size, num_labels), dropout)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def mlp(in_features: int, hidden_dim: int, out_features: int, hidden_layers: int, activation: str,
        dropout: float) -> nn.Sequential:
    """``hidden_layers`` x (linear, activation, dropout), then a linear output layer."""
    layers: list[nn.Module] = []
    for _ in range(hidden_layers):
        layers += [nn.Linear(in_features, hidden_dim), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        in_features = hidden_dim
    layers.append(nn.Linear(in_features, out_features))
    return nn.Sequential(*layers)


class EncoderPoolerHead(nn.Module):
    """Dropout and a linear layer on the encoder's own pooler output (BERT, RoBERTa, ...).

    :meth:`bind` takes the encoder's pooler. It is kept out of this module's tree (a plain list),
    so the head's ``state_dict`` holds only the classifier: the pooler's weights live, train (as
    the ``unfreeze_pooler`` knob says) and are saved in the encoder. Encoders without a pooler
    (DeBERTa-v2) keep the head's own dense + tanh on the first token, which then trains and is
    saved with the head. So bind before loading a saved ``state_dict``: binding decides its keys.
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.own_pooler: nn.Module | None = FirstTokenPooler(hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        self._encoder_pooler: list[nn.Module] = []

    def bind(self, encoder: nn.Module) -> None:
        pooler = getattr(encoder, "pooler", None)  # PEFT wrappers forward attribute look-ups
        if isinstance(pooler, nn.Module):
            self._encoder_pooler = [pooler]
            self.own_pooler = None  # unused from now on: keep its weights out of the head

    @property
    def pooler(self) -> nn.Module:
        return self._encoder_pooler[0] if self._encoder_pooler else self.own_pooler

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pooler(hidden_states)))


# --- losses ---------------------------------------------------------------------------------


def inverse_frequency_weights(class_counts: Sequence[int]) -> torch.Tensor:
    """Per-class weights n / (k * count): 1 / frequency, averaging 1 when every class is present;
    a class with no examples gets 0."""
    counts = torch.as_tensor(class_counts, dtype=torch.float32)
    weights = torch.where(counts > 0, counts.sum() / (len(counts) * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights


def effective_number_weights(class_counts: Sequence[int], beta: float) -> torch.Tensor:
    """Class-balanced weights (Cui et al., 2019): 1 / effective number (1 - beta^n) / (1 - beta),
    scaled to sum to the number of classes; a class with no examples gets 0.

    ``beta`` = 0 weighs classes equally; as ``beta`` nears 1 the weights near 1 / frequency."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    # (1 - beta^n) / (1 - beta) = -expm1(n log beta) / (1 - beta), accurate for beta near 1
    effective = -torch.expm1(counts * math.log(beta)) / (1.0 - beta) if beta > 0 else (counts > 0).double()
    weights = torch.where(counts > 0, 1.0 / effective.clamp(min=1e-12), torch.zeros_like(counts))
    return (weights * len(counts) / weights.sum()).float()


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): cross entropy down-weighted on easy examples by (1 - p_t)^gamma,
    times an optional per-class weight ``alpha``; the mean over the batch."""

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


class LogitDifferenceBCE(nn.Module):
    """Binary cross entropy on ``logits[:, 1] - logits[:, 0]``, the positive class's log-odds under
    the two-way softmax, so probabilities read the same as for the other losses."""

    def __init__(self, pos_weight: float) -> None:
        super().__init__()
        self.loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return self.loss(logits[:, 1] - logits[:, 0], labels.float())


# --- scoring (post, criterion) embeddings ---------------------------------------------------


class PairScorer(nn.Module):
    """Logit pairs for every (post, criterion) from their embeddings ``u`` (posts, dim) and ``v``
    (criteria, dim): an MLP on ``[u, v, u * v, |u - v|]``, the features sentence-pair models use."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4 * dim, hidden), nn.GELU(), nn.Linear(hidden, 2))

    def forward(self, posts: torch.Tensor, criteria: torch.Tensor) -> torch.Tensor:
        u = posts.float().unsqueeze(1).expand(-1, criteria.shape[0], -1)
        v = criteria.float().unsqueeze(0).expand(posts.shape[0], -1, -1)
        return self.mlp(torch.cat([u, v, u * v, (u - v).abs()], dim=-1))
