"""Length-bucketed batches of units with dynamic padding, so few pad tokens are ever processed.

Training: shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, cut into
batches, shuffle the batches. Batches stay random from epoch to epoch, but each holds examples of
similar length. Evaluation: sort everything by length (order does not matter there).

A batch holds units (what the encoder reads) and the pairs they score among those of the split
(:class:`UnitPairs`): with the cross-encoder each unit is one pair; with a post encoder a unit
scores every criterion of its post.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from criteria.data.tokens import EncodedUnits
from criteria.data.units import Units


@dataclass(frozen=True)
class UnitPairs:
    """The units a set of pairs is scored from, and each unit's pairs among that set: the pairs
    of ``units[k]`` are ``pairs[starts[k]:starts[k + 1]]``."""

    units: np.ndarray
    starts: np.ndarray
    pairs: np.ndarray

    @classmethod
    def of(cls, units: Units, pairs: Sequence[int]) -> UnitPairs:
        pairs = np.unique(np.asarray(pairs, dtype=np.int64))
        owners = units.pair_unit[pairs]
        order = np.argsort(owners, kind="stable")
        pairs, owners = pairs[order], owners[order]
        unique, starts = np.unique(owners, return_index=True)
        return cls(unique, np.append(starts, len(pairs)), pairs)

    def __len__(self) -> int:
        return len(self.units)

    def pairs_of(self, position: int) -> np.ndarray:
        return self.pairs[self.starts[position]:self.starts[position + 1]]


@dataclass
class Batch:
    input_ids: torch.Tensor  # (units, tokens)
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    labels: torch.Tensor  # (pairs,)
    indices: torch.Tensor  # (pairs,): the pairs' indices in the corpus, to map predictions back
    rows: torch.Tensor  # (pairs,): each pair's unit, as a row of this batch
    slots: torch.Tensor  # (pairs,): each pair's output slot in its unit
    units: torch.Tensor  # (units,): the units' indices (what frozen-layer caches are keyed by)

    def to(self, device: str | torch.device) -> Batch:
        non_blocking = str(device).startswith("cuda")
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in (
            self.input_ids, self.attention_mask, self.token_type_ids, self.labels, self.indices, self.rows,
            self.slots, self.units)))

    def pair_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """One logit pair per pair of the batch, from the model's ``(units, slots, 2)`` output
        (``(units, 2)`` when each unit scores one pair)."""
        return logits.reshape(logits.shape[0], -1, 2)[self.rows, self.slots]

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


def collate(encoded: EncodedUnits, positions: np.ndarray, labels: Sequence[int], pad_id: int,
            members: UnitPairs | None = None) -> Batch:
    """Pad the units at ``positions`` to the longest among them. ``positions`` index
    ``members.units`` (the units of a split, each scoring its pairs there); without ``members``
    they are unit indices of one pair each (the cross-encoder's: unit ``i`` is pair ``i``)."""
    units = members.units[positions] if members is not None else np.asarray(positions)
    width = int(encoded.lengths[units].max())
    input_ids = np.full((len(units), width), pad_id, dtype=np.int64)
    segments = np.zeros((len(units), width), dtype=np.int64)
    mask = np.zeros((len(units), width), dtype=np.int64)
    pair_lists = []
    for row, unit in enumerate(units):
        ids, seg = encoded.unit(int(unit))
        input_ids[row, : len(ids)] = ids
        segments[row, : len(ids)] = seg
        mask[row, : len(ids)] = 1
        pair_lists.append(members.pairs_of(int(positions[row])) if members is not None else np.asarray([unit]))
    pairs = np.concatenate(pair_lists) if pair_lists else np.zeros(0, dtype=np.int64)
    rows = np.repeat(np.arange(len(units)), [len(p) for p in pair_lists])
    return Batch(
        torch.from_numpy(input_ids), torch.from_numpy(mask), torch.from_numpy(segments),
        torch.as_tensor([labels[int(i)] for i in pairs], dtype=torch.long),
        torch.as_tensor(pairs, dtype=torch.long), torch.as_tensor(rows, dtype=torch.long),
        torch.as_tensor(encoded.units.pair_slot[pairs], dtype=torch.long), torch.as_tensor(units, dtype=torch.long),
    )


def iterate(
    encoded: EncodedUnits, batches: list[np.ndarray], labels: Sequence[int], pad_id: int,
    members: UnitPairs | None = None,
) -> Iterator[Batch]:
    for positions in batches:
        yield collate(encoded, positions, labels, pad_id, members)


def padding_ratio(encoded: EncodedUnits, batches: list[np.ndarray]) -> float:
    """Tokens processed (with padding) per real token."""
    lengths = encoded.lengths
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    return padded / max(1, int(sum(int(lengths[b].sum()) for b in batches)))
