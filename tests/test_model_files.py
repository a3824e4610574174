"""Model folders that keep only what training changed, beside a hashed reference to the base model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from criteria.engine.model import (
    MODEL_FILE,
    TRAINED_FILE,
    CriterionClassifier,
    load_classifier,
    load_encoder,
    load_tokenizer,
    save_classifier,
)
from criteria.engine.model_source import ModelError, base_reference
from criteria.plugin.registry import get_registry

METADATA = {"head": {"name": "linear", "config": {"dropout": 0.0}},
            "criteria": [{"id": "A.1", "name": "DEPRESSED_MOOD", "text": "Feels low most of the day."}],
            "max_length": 32, "threshold": 0.5}


def classifier(encoder):
    head = get_registry().get("head", "linear").cls(dropout=0.0).build(encoder.config.hidden_size, 2)
    return CriterionClassifier(encoder, head).eval()


def logits(model, tokenizer):
    batch = tokenizer(["I cannot sleep and nothing is fun.", "A fine day."], padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])


def trained_encoder(folder, peft_name=None, frozen_layers=0):
    """An encoder (wrapped by a PEFT method when named) whose trainable weights moved."""
    from criteria.engine.config import TrainConfig
    from criteria.engine.freezing import apply_freezing
    from criteria.plugin.kinds import TrainingPlan

    encoder = load_encoder(str(folder), hidden_dropout=0.0, attention_dropout=0.0)
    plugin = get_registry().get("peft", peft_name).cls() if peft_name else None
    if plugin is not None:
        encoder = plugin.build(encoder, TrainingPlan(total_steps=1))
    apply_freezing(encoder, TrainConfig(freeze_layers=frozen_layers))
    with torch.no_grad():
        for param in encoder.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    return encoder, plugin


def test_frozen_layers_are_referenced_not_copied(tiny_bert, tmp_path):
    encoder, _ = trained_encoder(tiny_bert, frozen_layers=6)  # embeddings and the bottom layer of two
    model = classifier(encoder)
    tokenizer = load_tokenizer(str(tiny_bert))
    folder = save_classifier(model, tokenizer, tmp_path / "model", METADATA, base=base_reference(str(tiny_bert)))
    saved = torch.load(folder / TRAINED_FILE, weights_only=True)
    assert set(saved) == {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert not any(n.startswith("embeddings.") or ".layer.0." in n for n in saved)
    assert not list((folder / "encoder").glob("*.safetensors"))  # no copy of the base weights
    meta = json.loads((folder / MODEL_FILE).read_text())
    assert meta["base_model"]["name"] == str(tiny_bert) and len(meta["base_model"]["sha256"]) == 64
    loaded, _, _ = load_classifier(folder, get_registry())
    torch.testing.assert_close(logits(loaded, tokenizer), logits(model, tokenizer))


def test_a_lora_model_keeps_its_adapter_weights_and_merges_them_when_loaded(tiny_bert, tmp_path):
    import transformers

    encoder, plugin = trained_encoder(tiny_bert, "lora")
    model = classifier(encoder)
    tokenizer = load_tokenizer(str(tiny_bert))
    expected = logits(model, tokenizer)
    folder = save_classifier(model, tokenizer, tmp_path / "model", METADATA, peft=plugin,
                             base=base_reference(str(tiny_bert)))
    saved = torch.load(folder / TRAINED_FILE, weights_only=True)
    assert saved and all("lora_" in name for name in saved)
    full = sum(p.numel() for p in plugin.base_model(encoder).parameters())
    assert sum(t.numel() for t in saved.values()) < 0.1 * full
    loaded, _, meta = load_classifier(folder, get_registry())
    assert meta["peft"]["name"] == "lora"
    assert isinstance(loaded.encoder, transformers.PreTrainedModel)  # merged on load: plain and fast
    torch.testing.assert_close(logits(loaded, tokenizer), expected, rtol=1e-4, atol=1e-5)


def test_a_changed_base_model_is_refused_with_what_to_do(tiny_bert, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_bert, base)
    encoder, _ = trained_encoder(base, frozen_layers=6)
    folder = save_classifier(classifier(encoder), load_tokenizer(str(base)), tmp_path / "model", METADATA,
                             base=base_reference(str(base)))
    weights = base / "model.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(weights)
    name = next(iter(state))
    state[name] = state[name] + 1.0
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(ModelError, match="not the one this model was fine-tuned from"):
        load_classifier(folder, get_registry())
    shutil.rmtree(base)
    with pytest.raises(ModelError):
        load_classifier(folder, get_registry())


def test_a_fully_trained_encoder_is_saved_whole(tiny_bert, tmp_path):
    encoder, _ = trained_encoder(tiny_bert)
    folder = save_classifier(classifier(encoder), load_tokenizer(str(tiny_bert)), tmp_path / "model", METADATA,
                             base=base_reference(str(tiny_bert)))
    assert list((folder / "encoder").glob("*.safetensors")) and not (folder / TRAINED_FILE).exists()
    assert "base_model" not in json.loads((folder / MODEL_FILE).read_text())
