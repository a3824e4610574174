"""Continued pretraining: a masked-language-model stage before fine-tuning (``[pretrain]``).

Domain-adaptive pretraining (DAPT) reads a corpus of the domain; task-adaptive pretraining (TAPT)
the task's own training posts. Either way the encoder keeps learning to predict hidden tokens
from their context, on text like what it will classify, before it learns to classify. Which
tokens are hidden is a masking-strategy plugin's choice (:class:`criteria.MaskingPlugin`); of the
chosen tokens 80% become the mask token, 10% a random token and 10% stay (BERT's recipe), and
the loss is computed on them only.

The adapted encoder is cached in ``<cache>/pretrained/<key>/`` (``CRITERIA_CACHE_DIR`` moves it)
per (model and its weights, the texts, the stage's settings, the masking strategy, the seed and
the precision): trials and folds that share these pretrain once. Each folder holds the encoder
in ``save_pretrained`` form (a distinct model location, so the frozen-layer cache never mixes
it with the original), its MLM head, and :data:`RECORD_FILE`: what was done, with the MLM loss
of every optimizer step. Folders are written whole (built beside, then renamed into place), so a
crashed or parallel run never leaves half of one; deleting them only costs time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from criteria.cache import cache_root
from criteria.data.batching import bucketed_batches
from criteria.engine.config import PretrainConfig
from criteria.engine.job import TrainingDiverged
from criteria.engine.masked_lm import MaskedLM, load_masked_lm, save_adapted
from criteria.engine.model import resolve_model_name
from criteria.engine.model_source import weights_stamp
from criteria.files import write_json
from criteria.plugin.kinds import MaskingPlugin

__all__ = ["RECORD_FILE", "AdaptedEncoder", "TokenWindows", "adapt_encoder", "mask_tokens", "token_windows"]

RECORD_FILE = "pretraining.json"
#: Shares of the chosen tokens replaced by the mask token and by a random token (the rest stay).
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1


@dataclass(frozen=True)
class AdaptedEncoder:
    """An encoder after continued pretraining: ``location`` is what ``from_pretrained`` loads;
    ``cached`` says whether an earlier run made it; ``record`` what the stage did (texts,
    sequences, tokens, the loss of every step, seconds, whether the MLM head was created)."""

    location: str
    key: str
    cached: bool
    record: dict[str, Any]

    @property
    def losses(self) -> list[float]:
        """The MLM loss of every optimizer step, in order."""
        return list(self.record["losses"])

    @property
    def epoch_losses(self) -> list[float]:
        return list(self.record["epoch_losses"])

    def describe(self) -> str:
        """One line: what was adapted on what, and the loss from first to last epoch."""
        r = self.record
        where = "from the cache" if self.cached else f"in {r['seconds']:.0f} s"
        head = ", MLM head created (tied to the input embeddings)" if r["created_head"] else ""
        return (f"continued pretraining ({r['masking']} masking, {r['texts']} texts, {r['sequences']} sequences, "
                f"{r['epochs']} epoch{'s' if r['epochs'] != 1 else ''}{head}): MLM loss {r['losses'][0]:.2f} at the "
                f"first step, {r['epoch_losses'][-1]:.2f} over the last epoch; {where}")


@dataclass(frozen=True)
class TokenWindows:
    """Token sequences to pretrain on, each with its special tokens, and for each token the index
    of the word it belongs to (-1: a special token, never masked)."""

    ids: tuple[np.ndarray, ...]
    words: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.ids), dtype=np.int64, count=len(self.ids))


def token_windows(tokenizer: Any, texts: Sequence[str], max_length: int) -> TokenWindows:
    """Each text cut into windows of at most ``max_length`` tokens (special tokens included): no
    text is truncated, a long one becomes several sequences. Word indices come from the
    tokenizer's own word boundaries (a fast tokenizer's ``word_ids``)."""
    batch = tokenizer(list(texts), truncation=True, max_length=max_length, return_overflowing_tokens=True,
                      return_attention_mask=False, return_token_type_ids=False)
    ids_out, words_out = [], []
    for row, ids in enumerate(batch["input_ids"]):
        ids_out.append(np.asarray(ids, dtype=np.int64))
        words_out.append(np.asarray([-1 if w is None else w for w in batch.word_ids(row)], dtype=np.int64))
    return TokenWindows(tuple(ids_out), tuple(words_out))


def mask_tokens(ids: np.ndarray, chosen: np.ndarray, mask_token_id: int, vocab_size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, labels)`` for one sequence: of the ``chosen`` tokens, 80% become the mask token,
    10% a random token and 10% stay; labels are the original tokens there and -100 elsewhere."""
    labels = np.where(chosen, ids, -100)
    draw = rng.random(len(ids))
    inputs = ids.copy()
    inputs[chosen & (draw < MASK_SHARE)] = mask_token_id
    random_slots = chosen & (draw >= MASK_SHARE) & (draw < MASK_SHARE + RANDOM_SHARE)
    inputs[random_slots] = rng.integers(0, vocab_size, size=int(random_slots.sum()))
    return inputs, labels


def stage_key(model_name: str | None, texts: Sequence[str], config: PretrainConfig, masking: MaskingPlugin,
              seed: int, precision: str) -> str:
    """What the adapted encoder depends on. The corpus's path and the TAPT switch are not in it:
    the texts themselves are."""
    location = resolve_model_name(model_name)
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    settings = config.model_dump(mode="json", exclude={"corpus", "text_column", "tapt"})
    parts = [location, weights_stamp(location), digest.hexdigest(), json.dumps(settings, sort_keys=True),
             masking.name, json.dumps(masking.config.model_dump(mode="json"), sort_keys=True), str(seed), precision]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def adapt_encoder(model_name: str | None, tokenizer: Any, texts: Sequence[str], config: PretrainConfig,
                  masking: MaskingPlugin, runtime: Any, seed: int) -> AdaptedEncoder:
    """The encoder of ``model_name`` adapted to ``texts`` by ``config.epochs`` epochs of masked
    language modelling, from the cache when the same stage ran before."""
    key = stage_key(model_name, texts, config, masking, seed, str(runtime.precision))
    folder = cache_root() / "pretrained" / key
    record = _read_record(folder)
    if record is not None:
        return AdaptedEncoder(str(folder), key, True, record)
    start = time.perf_counter()
    windows = token_windows(tokenizer, texts, config.max_length)
    masked_lm = load_masked_lm(model_name, tokenizer, runtime)
    losses, epoch_losses = _train(masked_lm, windows, config, masking, runtime, seed)
    record = {
        "format": 1, "key": key, "model": resolve_model_name(model_name), "texts": len(texts),
        "sequences": len(windows), "tokens": int(windows.lengths.sum()), "epochs": config.epochs,
        "settings": config.model_dump(mode="json", exclude={"corpus", "text_column", "tapt"}),
        "masking": masking.name, "masking_config": masking.config.model_dump(mode="json"), "seed": seed,
        "precision": str(runtime.precision), "created_head": masked_lm.created_head,
        "losses": losses, "epoch_losses": epoch_losses, "seconds": time.perf_counter() - start,
    }
    _write_whole(folder, lambda tmp: _save(masked_lm, model_name, tmp, record))
    return AdaptedEncoder(str(folder), key, False, record)


def _train(masked_lm: MaskedLM, windows: TokenWindows, config: PretrainConfig, masking: MaskingPlugin,
           runtime: Any, seed: int) -> tuple[list[float], list[float]]:
    """Masked language modelling over ``windows``; the loss of every step and the mean of each epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 1])
    model = masked_lm.model.to(runtime.device)
    model.train()
    tokenizer = masked_lm.tokenizer
    select = masking.build(config.probability)
    vocab_size = model.get_input_embeddings().weight.shape[0]
    pad_id = tokenizer.pad_token_id or 0
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    steps_per_epoch = math.ceil(len(windows) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = round(config.warmup_ratio * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / max(1, warmup) if step < warmup
        else max(0.0, (total - step) / max(1, total - warmup)))
    scaler = runtime.grad_scaler()
    losses: list[float] = []
    epoch_losses: list[float] = []
    for epoch in range(config.epochs):
        epoch_sum = epoch_count = 0.0
        for positions in bucketed_batches(windows.lengths, config.batch_size, seed=seed, epoch=epoch):
            inputs, labels, mask = _batch(windows, positions, select, rng, tokenizer.mask_token_id, vocab_size,
                                          pad_id)
            inputs, labels, mask = inputs.to(runtime.device), labels.to(runtime.device), mask.to(runtime.device)
            with runtime.autocast():
                hidden = masked_lm.encoder(input_ids=inputs, attention_mask=mask).last_hidden_state
                targets = labels != -100
                logits = masked_lm.logits_at(hidden[targets])
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[targets])
            (scaler.scale(loss) if scaler else loss).backward()
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged(f"the MLM loss of continued pretraining became {value} at step {len(losses) + 1}")
            losses.append(value)
            count = int(targets.sum())
            epoch_sum, epoch_count = epoch_sum + value * count, epoch_count + count
        epoch_losses.append(epoch_sum / max(1, epoch_count))
    model.eval()
    return losses, epoch_losses


def _batch(windows: TokenWindows, positions: np.ndarray, select: Callable[..., np.ndarray],
           rng: np.random.Generator, mask_token_id: int, vocab_size: int, pad_id: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded inputs, labels and attention mask of the sequences at ``positions``. A sequence the
    strategy chose nothing in gets one token chosen at random, so every sequence teaches."""
    width = max(len(windows.ids[p]) for p in positions)
    inputs = np.full((len(positions), width), pad_id, dtype=np.int64)
    labels = np.full((len(positions), width), -100, dtype=np.int64)
    mask = np.zeros((len(positions), width), dtype=np.int64)
    for row, p in enumerate(positions):
        ids, words = windows.ids[p], windows.words[p]
        chosen = np.asarray(select(words, rng), dtype=bool) & (words >= 0)
        if not chosen.any() and (words >= 0).any():
            chosen[rng.choice(np.flatnonzero(words >= 0))] = True
        masked, targets = mask_tokens(ids, chosen, mask_token_id, vocab_size, rng)
        inputs[row, :len(ids)], labels[row, :len(ids)], mask[row, :len(ids)] = masked, targets, 1
    return torch.from_numpy(inputs), torch.from_numpy(labels), torch.from_numpy(mask)


def _save(masked_lm: MaskedLM, model_name: str | None, folder: Path, record: dict[str, Any]) -> None:
    save_adapted(masked_lm, model_name, folder)
    write_json(folder / RECORD_FILE, record, "pretraining record")


def _read_record(folder: Path) -> dict[str, Any] | None:
    """The record of a complete cached stage, or None (absent, or damaged: then it runs again)."""
    try:
        return json.loads((folder / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_whole(folder: Path, write: Callable[[Path], None]) -> None:
    """Write a folder whole: into a sibling first, then renamed into place. When another process
    finished the same folder first, its copy is kept (they are the same stage)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        if folder.exists() and _read_record(folder) is None:
            shutil.rmtree(folder, ignore_errors=True)  # a damaged leftover: replace it
        os.rename(tmp, folder)
    except OSError:
        if _read_record(folder) is None:
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
