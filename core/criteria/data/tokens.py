"""Tokenizing model inputs once, and caching the result on disk.

A formulation's :class:`~criteria.data.units.Units` say what the encoder reads: one text per unit
(``[CLS] post [SEP]``) or a text pair (``[CLS] post [SEP] criterion [SEP]``). Only the first text
(the post) is truncated: a criterion is what the model must judge against, so it always survives
whole.

The cache key covers the tokenizer itself (its full serialized state, not just its name), the max
length, and the units' hash, so trials and folds of a study, and later studies on the same data,
reuse one tokenization.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from criteria.cache import cache_root
from criteria.data.corpus import Corpus
from criteria.data.units import Units, pair_units
from criteria.errors import CriteriaError


@dataclass(frozen=True)
class EncodedUnits:
    """Token ids of every unit, ragged: unit ``u`` is ``ids[offsets[u]:offsets[u+1]]``;
    ``segments`` holds the matching token type ids (0: post, 1: criterion). ``units`` says which
    unit and slot score each pair."""

    ids: np.ndarray
    segments: np.ndarray
    offsets: np.ndarray
    units: Units
    key: str = ""  # identifies this tokenization (tokenizer, max length, units), for later caches
    criteria: EncodedUnits | None = None  # the token ids of ``units.criteria``, one unit per criterion

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def unit(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.ids[start:end], self.segments[start:end]

    #: With the cross-encoder's units (one per pair), unit ``i`` is pair ``i``.
    pair = unit


#: The name this type had while every unit was a pair.
EncodedPairs = EncodedUnits


def cache_dir() -> Path:
    return cache_root() / "tokens"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of everything that changes token ids: vocabulary, normalizer, special tokens."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Truncation and padding are call settings the tokenizer keeps between calls; leave them out.
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        digest.update(json.dumps(state, sort_keys=True).encode())
    else:  # slow tokenizers: the vocabulary and the special tokens
        digest.update(repr(sorted(tokenizer.get_vocab().items())).encode())
        digest.update(repr(tokenizer.all_special_tokens).encode())
    return digest.hexdigest()


def encode_pairs(tokenizer: Any, corpus: Corpus, max_length: int, *, use_cache: bool = True) -> EncodedUnits:
    """Token ids of the cross-encoder's units (one per pair of ``corpus``), cached."""
    return encode_units(tokenizer, pair_units(corpus), max_length, use_cache=use_cache, corpus=corpus)


def encode_units(tokenizer: Any, units: Units, max_length: int, *, use_cache: bool = True,
                 corpus: Corpus | None = None) -> EncodedUnits:
    """Token ids for every unit, from the cache when this exact job was done before. ``corpus``
    (the units' source) only names criteria in an error about ``max_length``."""
    key = hashlib.sha256(
        f"{tokenizer_fingerprint(tokenizer)}|{max_length}|{units.sha256}".encode()
    ).hexdigest()[:32]
    # Criteria a bi-encoder reads are encoded on their own: a few short texts, never truncated.
    criteria = encode_texts(tokenizer, units.criteria, max_length) if units.criteria is not None else None
    path = cache_dir() / f"{key}.npz"
    if use_cache and path.is_file():
        with np.load(path) as cached:
            return EncodedUnits(cached["ids"], cached["segments"], cached["offsets"], units, key, criteria)
    ids, segments, offsets = _encode(tokenizer, units, max_length, corpus)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, ids=ids, segments=segments, offsets=offsets)
        os.replace(tmp, path)  # atomic: parallel workers never read half a file
    return EncodedUnits(ids, segments, offsets, units, key, criteria)


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int) -> EncodedUnits:
    """Token ids of standalone texts (one unit each; not cached): criterion texts a bi-encoder reads."""
    count = len(texts)
    return encode_units(tokenizer, Units(tuple(texts), None, np.arange(count), np.zeros(count, np.int64), 1),
                        max_length, use_cache=False)


def _check_room(tokenizer: Any, units: Units, max_length: int, corpus: Corpus | None) -> None:
    """Criteria are never truncated: the longest must leave room for the post."""
    texts = sorted(set(units.second or ()))
    if not texts:
        return
    special = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = {text: len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts}
    longest = max(lengths, key=lengths.get)
    needed = lengths[longest] + special + 8
    if max_length < needed:
        names = {c.text: c.id for c in corpus.criteria} if corpus is not None else {}
        raise CriteriaError(
            f"data.max_length = {max_length} is too short: criterion {names.get(longest, repr(longest[:40]))} "
            f"alone takes {lengths[longest]} tokens and the post needs room too. Use max_length >= {needed}, "
            "or shorten the criterion text."
        )


def tokenize_units(tokenizer: Any, units: Units, max_length: int, **options: Any) -> Any:
    """The tokenizer's output for every unit, truncated as the model reads them (only the post);
    ``options`` ask for more (``return_offsets_mapping``) and never change the token ids."""
    pair_args = (list(units.first), list(units.second)) if units.second is not None else (list(units.first),)
    return tokenizer(
        *pair_args, truncation="only_first" if units.second is not None else True, max_length=max_length,
        return_token_type_ids=True, return_attention_mask=False, **options,
    )


def _encode(tokenizer: Any, units: Units, max_length: int, corpus: Corpus | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _check_room(tokenizer, units, max_length, corpus)
    batch = tokenize_units(tokenizer, units, max_length)
    ids = batch["input_ids"]
    segments = batch.get("token_type_ids") or [[0] * len(row) for row in ids]
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat_ids = np.fromiter((t for row in ids for t in row), dtype=np.int32, count=int(offsets[-1]))
    flat_segments = np.fromiter((t for row in segments for t in row), dtype=np.int8, count=int(offsets[-1]))
    return flat_ids, flat_segments, offsets
