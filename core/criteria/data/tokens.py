"""Tokenizing (post, criterion) pairs once, and caching the result on disk.

Input layout: ``[CLS] post [SEP] criterion [SEP]``. Only the post is truncated: the criterion is
what the model must judge against, so it always survives whole.

The cache key covers the tokenizer itself (its full serialized state, not just its name), the max
length, and the corpus hash, so trials and folds of a study, and later studies on the same data,
reuse one tokenization.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from criteria.cache import cache_root
from criteria.data.corpus import Corpus
from criteria.errors import CriteriaError


@dataclass(frozen=True)
class EncodedPairs:
    """Token ids of every pair in a corpus, ragged: pair ``i`` is ``ids[offsets[i]:offsets[i+1]]``.
    ``segments`` holds the matching token type ids (0: post, 1: criterion)."""

    ids: np.ndarray
    segments: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.ids[start:end], self.segments[start:end]


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


def encode_pairs(tokenizer: Any, corpus: Corpus, max_length: int, *, use_cache: bool = True) -> EncodedPairs:
    """Token ids for every pair of ``corpus``, from the cache when this exact job was done before."""
    key = hashlib.sha256(
        f"{tokenizer_fingerprint(tokenizer)}|{max_length}|{corpus.sha256}".encode()
    ).hexdigest()[:32]
    path = cache_dir() / f"{key}.npz"
    if use_cache and path.is_file():
        with np.load(path) as cached:
            return EncodedPairs(cached["ids"], cached["segments"], cached["offsets"])
    encoded = _encode(tokenizer, corpus, max_length)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, ids=encoded.ids, segments=encoded.segments, offsets=encoded.offsets)
        os.replace(tmp, path)  # atomic: parallel workers never read half a file
    return encoded


def _encode(tokenizer: Any, corpus: Corpus, max_length: int) -> EncodedPairs:
    posts = [corpus.text(pair) for pair in corpus.pairs]
    criteria = {c.id: c.text for c in corpus.criteria}
    special = tokenizer.num_special_tokens_to_add(pair=True)
    criterion_lengths = {cid: len(tokenizer(text, add_special_tokens=False)["input_ids"]) for cid, text in criteria.items()}
    longest = max(criterion_lengths, key=criterion_lengths.get)
    needed = criterion_lengths[longest] + special + 8
    if max_length < needed:
        raise CriteriaError(
            f"data.max_length = {max_length} is too short: criterion {longest} alone takes "
            f"{criterion_lengths[longest]} tokens and the post needs room too. Use max_length >= {needed}, "
            "or shorten the criterion text."
        )
    texts = [criteria[pair.criterion_id] for pair in corpus.pairs]
    batch = tokenizer(
        posts, texts, truncation="only_first", max_length=max_length,
        return_token_type_ids=True, return_attention_mask=False,
    )
    ids = batch["input_ids"]
    segments = batch.get("token_type_ids") or [[0] * len(row) for row in ids]
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat_ids = np.fromiter((t for row in ids for t in row), dtype=np.int32, count=int(offsets[-1]))
    flat_segments = np.fromiter((t for row in segments for t in row), dtype=np.int8, count=int(offsets[-1]))
    return EncodedPairs(flat_ids, flat_segments, offsets)
