"""Tiny randomly initialised encoders (BERT and DeBERTa-v2 shapes) saved with the embedded
model's tokenizer, so engine tests need no downloaded weights and run in seconds."""

from __future__ import annotations

from pathlib import Path

import torch
from criteria import LossPlugin


class NanLoss(LossPlugin):
    """A loss that diverges at once, to test how training and studies handle it."""

    name = "nan"
    summary = "Always NaN."

    def build(self, class_counts):
        class Nan(torch.nn.Module):
            def forward(self, logits, labels):
                return logits.sum() * float("nan")

        return Nan()


def save_tiny_model(folder: Path, family: str = "bert") -> Path:
    import transformers
    from criteria.engine.model_source import embedded_model_path

    tokenizer = transformers.AutoTokenizer.from_pretrained(embedded_model_path())
    shape = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=37, max_position_embeddings=512)
    if family == "bert":
        model = transformers.BertModel(transformers.BertConfig(**shape))
    elif family == "deberta-v2":
        model = transformers.DebertaV2Model(transformers.DebertaV2Config(**shape, type_vocab_size=0))
    else:
        raise ValueError(family)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
