"""Length-bucketed batches with dynamic padding, so few pad tokens are ever processed.

Training: shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, cut into
batches, shuffle the batches. Batches stay random from epoch to epoch, but each holds examples of
similar length. Evaluation: sort everything by length (order does not matter there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from criteria.data.tokens import EncodedPairs


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the corpus, to map predictions back

    def to(self, device: str | torch.device) -> Batch:
        non_blocking = str(device).startswith("cuda")
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in (
            self.input_ids, self.attention_mask, self.token_type_ids, self.labels, self.indices)))

    @property
    def real_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def padded_tokens(self) -> int:
        return self.input_ids.numel()


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int = 0, pool_batches: int = 50
) -> list[np.ndarray]:
    """Index batches for one training epoch (deterministic in ``seed`` and ``epoch``)."""
    rng = np.random.default_rng([seed, epoch])
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start:start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches for evaluation: longest first, so a memory problem shows up at once."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def shuffled_batches(lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int = 0) -> list[np.ndarray]:
    """Plain random batches (no bucketing), for comparison in benchmarks."""
    order = np.random.default_rng([seed, epoch]).permutation(len(lengths))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(encoded: EncodedPairs, positions: np.ndarray, labels: Sequence[int], pad_id: int) -> Batch:
    """Pad the pairs at ``positions`` to the longest among them."""
    width = int(encoded.lengths[positions].max())
    input_ids = np.full((len(positions), width), pad_id, dtype=np.int64)
    segments = np.zeros((len(positions), width), dtype=np.int64)
    mask = np.zeros((len(positions), width), dtype=np.int64)
    for row, index in enumerate(positions):
        ids, seg = encoded.pair(int(index))
        input_ids[row, : len(ids)] = ids
        segments[row, : len(ids)] = seg
        mask[row, : len(ids)] = 1
    return Batch(
        torch.from_numpy(input_ids), torch.from_numpy(mask), torch.from_numpy(segments),
        torch.as_tensor([labels[int(i)] for i in positions], dtype=torch.long),
        torch.as_tensor(positions, dtype=torch.long),
    )


def iterate(
    encoded: EncodedPairs, batches: list[np.ndarray], labels: Sequence[int], pad_id: int
) -> Iterator[Batch]:
    for positions in batches:
        yield collate(encoded, positions, labels, pad_id)


def padding_ratio(encoded: EncodedPairs, batches: list[np.ndarray]) -> float:
    """Tokens processed (with padding) per real token."""
    lengths = encoded.lengths
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return padded / max(1, int(sum(int(lengths[b].sum()) for b in batches)))
