"""The encoder as a masked language model: what continued pretraining trains and what contextual
augmentation asks for words.

A checkpoint saved without its MLM head (the embedded all-MiniLM-L6-v2, any sentence-transformers
model) gets one **created** here: transformers' own head for the architecture (for BERT a dense
layer, GELU and LayerNorm, and a bias per word) with its output projection **tied to the input
embeddings**, so the only new weights are that small transform and the bias; the transform starts
as the identity (:func:`_start_created_head`). A checkpoint that has a head (bert-base-uncased,
RoBERTa) keeps it. After continued pretraining the encoder is saved as a plain transformers
model, pooler included, with the head's own weights beside it (:data:`HEAD_FILE`; the tied
projection is the embeddings, saved once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Sequence

import torch
from torch import nn

from criteria.engine.model import quiet_libraries, resolve_model_name
from criteria.engine.model_source import ModelError

__all__ = ["HEAD_FILE", "MaskedLM", "load_masked_lm", "save_adapted", "whole_word_vocabulary"]

#: The MLM head's own weights, beside an adapted encoder (its output projection is the embeddings).
HEAD_FILE = "mlm_head.pt"


@dataclass
class MaskedLM:
    """A transformers ``*ForMaskedLM`` model, its tokenizer, and whether its head was created."""

    model: nn.Module
    tokenizer: Any
    created_head: bool

    @property
    def mask_token(self) -> str:
        return self.tokenizer.mask_token

    @property
    def encoder(self) -> nn.Module:
        return self.model.base_model

    def logits_at(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits for hidden states ``(n, hidden)``: the head run on the masked
        positions only, not on every token (most of an MLM step's cost otherwise)."""
        return _head(self.model)(hidden)

    def fill(self, texts: Sequence[str], top_k: int, exclude: Collection[str] = ()) -> list[list[list[str]]]:
        """For each text, for each mask token in it, the ``top_k`` most likely whole words
        (lower-cased letters only; word pieces and punctuation are skipped) other than those in
        ``exclude``, best first. Excluding function words matters for a small corpus: a masked LM
        adapted to a few hundred posts ranks the most frequent words first wherever the mask is."""
        allowed, words = _whole_words(self.tokenizer)
        if exclude:
            allowed = allowed & torch.tensor([w not in exclude for w in words])
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        out: list[list[list[str]]] = []
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                batch = self.tokenizer(list(texts[start:start + 32]), return_tensors="pt", padding=True,
                                       truncation=True, max_length=256).to(device)
                hidden = self.encoder(input_ids=batch["input_ids"],
                                      attention_mask=batch["attention_mask"]).last_hidden_state
                masked = batch["input_ids"] == self.tokenizer.mask_token_id
                logits = self.logits_at(hidden[masked]).float()
                logits[:, ~allowed.to(device)] = -torch.inf
                best = logits.topk(top_k, dim=-1).indices.tolist()
                rows = masked.nonzero()[:, 0].tolist()
                for row in range(batch["input_ids"].shape[0]):
                    out.append([[words[i] for i in ids] for ids, r in zip(best, rows) if r == row])
        self.model.train(was_training)
        return out


def _head(model: nn.Module) -> nn.Module:
    """The module of an ``*ForMaskedLM`` model that maps hidden states to vocabulary logits: its
    one child besides the encoder (``cls`` for BERT, ``lm_head`` for RoBERTa)."""
    heads = [child for child in model.children() if child is not model.base_model]
    if len(heads) != 1:
        raise ModelError(f"{type(model).__name__} has {len(heads)} modules besides its encoder; criteria "
                         "needs the masked-language-model head as one module to pretrain this model")
    return heads[0]


#: Markers of a word's first piece in BPE (RoBERTa, GPT-2) and SentencePiece (DeBERTa-v3) vocabularies;
#: WordPiece (BERT) marks the other pieces instead (``##``).
_WORD_START = ("\u0120", "\u2581")


def _whole_words(tokenizer: Any) -> tuple[torch.Tensor, list[str]]:
    """Which vocabulary entries are whole words of letters (a mask), and each entry as a lower-case
    word ("" where it is none)."""
    cached = getattr(tokenizer, "_criteria_whole_words", None)
    if cached is None:
        words = []
        for token in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))):
            word = (token or "")
            word = word[1:] if word.startswith(_WORD_START) else word
            words.append(word.lower() if len(word) > 1 and word.isascii() and word.isalpha() else "")
        cached = (torch.tensor([bool(w) for w in words]), words)
        tokenizer._criteria_whole_words = cached
    return cached


def whole_word_vocabulary(model: MaskedLM | nn.Module, tokenizer: Any) -> tuple[list[str], torch.Tensor]:
    """The tokenizer's whole-word tokens (as lower-case words) and their input embeddings, each row
    of unit length (nearest neighbours by cosine similarity are then one matrix product)."""
    encoder = model.encoder if isinstance(model, MaskedLM) else model
    allowed, words = _whole_words(tokenizer)
    ids = allowed.nonzero()[:, 0]
    vectors = encoder.get_input_embeddings().weight.detach()[ids].float()
    vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return [words[i] for i in ids.tolist()], vectors.cpu()


def load_masked_lm(name: str | None, tokenizer: Any, runtime: Any = None) -> MaskedLM:
    """Model ``name`` (a hub name, a folder, None: the embedded model) as a masked language model:
    its own head when it has one, else a created one tied to the input embeddings. A folder
    written by :func:`save_adapted` gets its trained head back."""
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    location = resolve_model_name(name)
    quiet_libraries()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the missing head is expected; it is reported as created_head
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(location, output_loading_info=True,
                                                           **(runtime.model_kwargs() if runtime else {}))
    except ValueError as exc:
        raise ModelError(f"model {name or location!r} has no masked-language-model form in transformers, so "
                         f"[pretrain] cannot adapt it ({str(exc).splitlines()[0]}); remove [pretrain] or use "
                         "a BERT-like encoder") from None
    except OSError as exc:
        raise ModelError(f"cannot load model {name or location!r} as a masked language model: "
                         f"{str(exc).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    prefix = model.base_model_prefix + "."
    created = any(not key.startswith(prefix) for key in info["missing_keys"])
    saved_head = Path(location) / HEAD_FILE
    if created and saved_head.is_file():
        _head(model).load_state_dict(torch.load(saved_head, map_location="cpu", weights_only=True), strict=False)
        created = False
    if created:
        _start_created_head(model)
    return MaskedLM(model, tokenizer, created)


def _start_created_head(model: nn.Module) -> None:
    """A created head starts from the model's own idea of each word, not from noise: its
    projection to the vocabulary is the input embeddings (tied, whatever the config says), and
    its square layers (BERT's transform) start as the identity, so the first predictions read the
    encoder's last hidden states directly against the embeddings. The randomly initialised
    alternative spends the first epochs of a small corpus undoing a random rotation."""
    model.get_output_embeddings().weight = model.get_input_embeddings().weight
    with torch.no_grad():
        for module in _head(model).modules():
            if isinstance(module, nn.Linear) and module.in_features == module.out_features:
                module.weight.copy_(torch.eye(module.in_features))
                if module.bias is not None:
                    module.bias.zero_()


def save_adapted(masked_lm: MaskedLM, name: str | None, folder: Path) -> None:
    """Save the adapted encoder in ``folder`` as a plain transformers model (what fine-tuning
    loads), its tokenizer, and the MLM head's own weights (:data:`HEAD_FILE`). Parts of the
    original model that the MLM form lacks (BERT's pooler) are kept as they were."""
    from transformers import AutoModel

    quiet_libraries()
    encoder = AutoModel.from_pretrained(resolve_model_name(name))
    result = encoder.load_state_dict(masked_lm.encoder.state_dict(), strict=False)
    if result.unexpected_keys:
        raise ModelError(f"the adapted encoder does not fit {type(encoder).__name__} "
                         f"(unexpected weights {result.unexpected_keys[:3]})")
    encoder.save_pretrained(folder)
    masked_lm.tokenizer.save_pretrained(folder)
    tied = masked_lm.model.get_input_embeddings().weight
    head = {key: value.detach().cpu() for key, value in _head(masked_lm.model).state_dict().items()
            if value.data_ptr() != tied.data_ptr()}
    torch.save(head, folder / HEAD_FILE)
