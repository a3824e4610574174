"""The frozen-layer cache: frozen bottom layers computed once, not once per batch.

When the embeddings and the bottom ``k`` layers of the encoder are frozen and nothing random acts
below layer ``k``, their output for an input never changes. It is computed once per (model,
tokenization, ``k``, precision, attention implementation), kept in memory in 16-bit, spilled to
the cache folder when large, and reused by every epoch, every validation pass and every later
trial with the same key; training then runs only the layers above ``k`` (and the head).

Frozen layers run in evaluation mode here, so without dropout: a trial with the cache differs
from one without it by the dropout those layers would have applied. The cache applies only where
that is the only difference (:func:`frozen_depth` says when), and a ``[train]`` switch turns it off.

The encoder is cut in place for training (:class:`PrefixCut`): its bottom layers are taken out of
its layer list and its embeddings replaced by a module that hands out the batch's cached states.
:meth:`PrefixCut.restore` puts everything back before the model is evaluated on new inputs or
saved.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from criteria.cache import cache_root
from criteria.data.batching import sorted_batches
from criteria.data.tokens import EncodedUnits
from criteria.engine.freezing import REFERENCE_DEPTH
from criteria.engine.model_source import weights_stamp

__all__ = ["FrozenStates", "PrefixCut", "compute_states", "frozen_depth", "states_for"]

#: States above this size live in a file under the cache folder (memory-mapped), not in memory.
SPILL_BYTES = int(os.environ.get("CRITERIA_FROZEN_CACHE_SPILL_MB", "1024")) * 2**20
#: How many sets of states a process keeps in memory (trials usually share one key).
MEMORY_ENTRIES = 2
_MEMORY: OrderedDict[str, FrozenStates] = OrderedDict()


@dataclass(frozen=True)
class FrozenStates:
    """Layer-``k`` hidden states of every unit of a tokenization, ragged and 16-bit: unit ``u``
    is ``data[offsets[u]:offsets[u+1]]`` (one row per token)."""

    data: Any  # torch.Tensor (in memory) or np.memmap (spilled), float16, (tokens, hidden)
    offsets: np.ndarray
    criteria: FrozenStates | None = None  # the criterion texts a bi-encoder reads

    def batch(self, units: torch.Tensor, width: int, device: Any, dtype: torch.dtype) -> torch.Tensor:
        """The states of ``units``, padded to ``width`` tokens: ``(units, width, hidden)``."""
        hidden = self.data.shape[1]
        out = torch.zeros((len(units), width, hidden), dtype=torch.float16)
        for row, unit in enumerate(units.tolist()):
            start, end = int(self.offsets[unit]), int(self.offsets[unit + 1])
            rows = self.data[start:end]
            out[row, : end - start] = rows if isinstance(rows, torch.Tensor) else torch.from_numpy(np.asarray(rows))
        return out.to(device=device, dtype=dtype)


def frozen_depth(encoder: nn.Module, config: Any, runtime: Any) -> int | None:
    """How many bottom layers the cache can stand in for (the embeddings included), or None when
    it cannot apply: the ``[train]`` switch is off; nothing is frozen; LayerNorms of frozen layers
    train; token dropout acts below; the PEFT method changes what frozen layers compute; the
    model is compiled; or the encoder's layers are not where this module can cut them."""
    train = config.train
    num_layers = getattr(getattr(encoder, "config", None), "num_hidden_layers", 0)
    if not train.frozen_cache or not num_layers:
        return None
    depth = num_layers if train.freeze_encoder else round(train.freeze_layers * num_layers / REFERENCE_DEPTH)
    if depth <= 0 or train.unfreeze_layernorm or train.token_dropout > 0:
        return None
    if runtime.compile_mode is not None or not config.peft.keeps_frozen_layers:
        return None
    if _cut_points(encoder) is None:
        return None
    return depth


def _cut_points(encoder: nn.Module) -> tuple[nn.Module, nn.ModuleList, nn.Module] | None:
    """The module holding the layer list, the list, and the embeddings' parent: where the encoder
    is cut. None for architectures laid out otherwise (or with extra per-layer steps)."""
    num_layers = encoder.config.num_hidden_layers
    for module in encoder.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.ModuleList) and len(child) == num_layers and name in ("layer", "layers"):
                if getattr(module, "conv", None) is not None:  # DeBERTa-v2 xxlarge: a conv after layer 0
                    return None
                if isinstance(getattr(encoder, "embeddings", None), nn.Module):
                    return module, child, encoder
                return None
    return None


def cache_key(encoded: EncodedUnits, model_name: str, depth: int, runtime: Any) -> str:
    """What the states depend on: the tokenization (tokenizer, max length, units), the model,
    how deep the frozen part goes, and the arithmetic that computed it."""
    parts = [encoded.key, encoded.criteria.key if encoded.criteria is not None else "", model_name, str(depth),
             str(runtime.precision), str(runtime.attention), weights_stamp(model_name)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


class PrefixCut:
    """Cuts the bottom ``depth`` layers out of an encoder and feeds the layers above from cached
    states; :meth:`restore` undoes it."""

    def __init__(self, encoder: nn.Module, depth: int) -> None:
        holder, layers, parent = _cut_points(encoder)  # type: ignore[misc]
        self.holder, self.parent = holder, parent
        self.name = next(name for name, child in holder.named_children() if child is layers)
        self.layers, self.embeddings = layers, parent.embeddings
        self.depth = depth
        self.feed = _Feed()
        self.installed = False

    def install(self) -> PrefixCut:
        setattr(self.holder, self.name, nn.ModuleList(list(self.layers)[self.depth:]))
        self.parent.embeddings = self.feed
        self.installed = True
        return self

    def restore(self) -> None:
        if self.installed:
            setattr(self.holder, self.name, self.layers)
            self.parent.embeddings = self.embeddings
            self.installed = False

    def prefix_only(self) -> _PrefixOnly:
        """A context in which the encoder runs its embeddings and bottom layers only (to compute states)."""
        return _PrefixOnly(self)


class _Feed(nn.Module):
    """Stands in for the embeddings: hands out the states queued for the coming forward passes,
    in order (a bi-encoder's forward reads the posts, then the criteria)."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: list[torch.Tensor] = []

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not self.queue:
            raise RuntimeError("the frozen-layer cache was not fed before a forward pass")
        return self.queue.pop(0)


class _PrefixOnly:
    def __init__(self, cut: PrefixCut) -> None:
        self.cut = cut

    def __enter__(self) -> None:
        setattr(self.cut.holder, self.cut.name, nn.ModuleList(list(self.cut.layers)[: self.cut.depth]))

    def __exit__(self, *exc: Any) -> None:
        setattr(self.cut.holder, self.cut.name, self.cut.layers)


def _compute(model: nn.Module, cut: PrefixCut, encoded: EncodedUnits, runtime: Any, pad_token_id: int,
             batch_size: int, spill_to: Path) -> tuple[np.ndarray, Any]:
    """Layer-``depth`` states of every unit of ``encoded`` (in unit order), as 16-bit rows; in a
    file at ``spill_to`` (memory-mapped) when they are larger than :data:`SPILL_BYTES`."""
    from criteria.data.batching import collate

    lengths = encoded.lengths
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    hidden = model.encoder.config.hidden_size
    spill = int(offsets[-1]) * hidden * 2 > SPILL_BYTES
    if spill:
        spill_to.parent.mkdir(parents=True, exist_ok=True)
        writing = spill_to.with_name(f".{spill_to.name}.{os.getpid()}.tmp")
        data: Any = np.lib.format.open_memmap(writing, mode="w+", dtype=np.float16, shape=(int(offsets[-1]), hidden))
    else:
        data = torch.empty((int(offsets[-1]), hidden), dtype=torch.float16)
    labels = [0] * len(encoded.units.pair_unit)
    was_training = model.training
    model.eval()
    with torch.inference_mode(), cut.prefix_only():
        for positions in sorted_batches(lengths, batch_size):
            batch = collate(encoded, positions, labels, pad_token_id).to(runtime.device)
            kwargs = {"token_type_ids": batch.token_type_ids} if model._uses_segments else {}
            with runtime.autocast():
                states = model.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                       **kwargs).last_hidden_state
            states = states.to("cpu", torch.float16)
            for row, unit in enumerate(positions.tolist()):
                start, end = int(offsets[unit]), int(offsets[unit + 1])
                data[start:end] = states[row, : end - start].numpy() if spill else states[row, : end - start]
    model.train(was_training)
    if spill:
        data.flush()
        del data
        os.replace(writing, spill_to)  # whole files only: other processes may read them
        np.save(spill_to.with_suffix(".offsets.npy"), offsets)
        data = np.load(spill_to, mmap_mode="r")
    return offsets, data


def _spilled(path: Path) -> tuple[np.ndarray, Any] | None:
    """States another run spilled at ``path``, memory-mapped, or None."""
    offsets = path.with_suffix(".offsets.npy")
    if not (path.is_file() and offsets.is_file()):
        return None
    try:
        return np.load(offsets), np.load(path, mmap_mode="r")
    except (OSError, ValueError):  # a damaged file: compute again
        return None


def compute_states(model: nn.Module, cut: PrefixCut, encoded: EncodedUnits, key: str, runtime: Any,
                   pad_token_id: int, batch_size: int) -> tuple[FrozenStates, bool]:
    """The states for ``key``: from memory when a run computed them already, else computed now.
    Returns them and whether they came from the cache."""
    if key in _MEMORY:
        _MEMORY.move_to_end(key)
        return _MEMORY[key], True
    folder = cache_root() / "frozen"
    spilled = _spilled(folder / f"{key}.npy")
    hit = spilled is not None and (encoded.criteria is None or _spilled(folder / f"{key}-criteria.npy") is not None)
    offsets, data = spilled if hit and spilled else _compute(model, cut, encoded, runtime, pad_token_id, batch_size,
                                                             folder / f"{key}.npy")
    criteria = None
    if encoded.criteria is not None:
        path = folder / f"{key}-criteria.npy"
        c_offsets, c_data = (_spilled(path) if hit else None) or _compute(model, cut, encoded.criteria, runtime,
                                                                           pad_token_id, batch_size, path)
        criteria = FrozenStates(c_data, c_offsets)
    states = FrozenStates(data, offsets, criteria)
    _MEMORY[key] = states
    while len(_MEMORY) > MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)
    return states, hit


def states_for(cut: PrefixCut, states: FrozenStates, units: torch.Tensor, width: int, device: Any,
               dtype: torch.dtype, reads_criteria: bool, criteria_width: int | None = None) -> None:
    """Queue the states of a batch's units (and, for a bi-encoder, of the criteria) for its forward."""
    queue = [states.batch(units.cpu(), width, device, dtype)]
    if reads_criteria and states.criteria is not None:
        count = len(states.criteria.offsets) - 1
        queue.append(states.criteria.batch(torch.arange(count), criteria_width or 0, device, dtype))
    cut.feed.queue = queue


def clear_memory(keys: Iterable[str] | None = None) -> None:
    """Forget states kept in memory (all, or those of ``keys``)."""
    for key in list(keys if keys is not None else _MEMORY):
        _MEMORY.pop(key, None)
