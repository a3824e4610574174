"""Token dropout: a regulariser that masks a random share of a training batch's tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from criteria.engine.job import TrainingJob

__all__ = ["TokenDropout"]


@dataclass(frozen=True)
class TokenDropout:
    """Replace a random share of the non-special tokens of a training batch by the mask token."""

    rate: float
    mask_token_id: int
    special: torch.Tensor

    @classmethod
    def for_job(cls, job: TrainingJob, device: Any) -> TokenDropout | None:
        rate = job.config.train.token_dropout
        if not rate or job.mask_token_id is None:
            return None
        special = torch.tensor(sorted({job.pad_token_id, *job.special_token_ids}), device=device)
        return cls(rate, job.mask_token_id, special)

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        drop = torch.rand(input_ids.shape, device=input_ids.device) < self.rate
        drop &= ~torch.isin(input_ids, self.special)
        return input_ids.masked_fill(drop, self.mask_token_id)
