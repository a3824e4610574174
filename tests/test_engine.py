"""Tokenization cache, bucketing, and the engine on tiny random models."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from builtin_plugins import write_tiny_spec
from criteria.data import tokens
from criteria.data.batching import bucketed_batches, padding_ratio, shuffled_batches
from criteria.data.loaders import embedded_corpus
from criteria.data.splits import holdout, test_split
from criteria.data.tokens import encode_pairs
from criteria.engine.fit import fit
from criteria.engine.job import TrainingDiverged, TrainingJob
from criteria.engine.model import load_classifier, load_tokenizer
from criteria.engine.optimization import parameter_groups
from criteria.plugin.registry import get_registry
from criteria.spec.load import load_spec
from tiny_models import NanLoss


@pytest.fixture(scope="module")
def corpus():
    return embedded_corpus()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(None)


def test_pair_layout_truncates_the_post_never_the_criterion(corpus, tokenizer):
    encoded = encode_pairs(tokenizer, corpus, 48, use_cache=False)
    longest = int(np.argmax([len(corpus.text(p)) for p in corpus.pairs]))
    ids, segments = encoded.pair(longest)
    assert len(ids) == 48
    criterion = corpus.criterion(corpus.pairs[longest].criterion_id).text
    expected_tail = tokenizer(criterion, add_special_tokens=False)["input_ids"][-10:]
    assert list(ids[-11:-1]) == expected_tail and ids[-1] == tokenizer.sep_token_id
    assert ids[0] == tokenizer.cls_token_id and segments[-1] == 1 and segments[1] == 0


def test_tokenization_is_cached_and_reused(corpus, tokenizer, monkeypatch, tmp_path):
    monkeypatch.setenv("CRITERIA_CACHE_DIR", str(tmp_path))
    first = encode_pairs(tokenizer, corpus, 64)
    assert len(list(tmp_path.rglob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("tokenized again instead of reading the cache")

    monkeypatch.setattr(tokens, "_encode", fail)
    again = encode_pairs(tokenizer, corpus, 64)
    assert np.array_equal(first.ids, again.ids) and np.array_equal(first.offsets, again.offsets)
    monkeypatch.undo()
    monkeypatch.setenv("CRITERIA_CACHE_DIR", str(tmp_path))
    encode_pairs(tokenizer, corpus, 48)  # another max length: another entry
    assert len(list(tmp_path.rglob("*.npz"))) == 2


def test_max_length_too_short_for_the_criterion_is_a_clear_error(corpus, tokenizer):
    from criteria.errors import CriteriaError

    with pytest.raises(CriteriaError, match=r"max_length = 16 is too short: criterion A\.\d alone takes"):
        encode_pairs(tokenizer, corpus, 16, use_cache=False)


def test_bucketing_keeps_padding_low(corpus, tokenizer):
    encoded = encode_pairs(tokenizer, corpus, 256)
    lengths = encoded.lengths
    bucketed = bucketed_batches(lengths, 16, seed=0)
    plain = shuffled_batches(lengths, 16, seed=0)
    assert sorted(np.concatenate(bucketed).tolist()) == list(range(len(lengths)))
    assert padding_ratio(encoded, bucketed) <= 1.05 < padding_ratio(encoded, plain)
    assert [b.tolist() for b in bucketed] != [b.tolist() for b in bucketed_batches(lengths, 16, seed=0, epoch=1)]


def write_spec(tmp_path: Path, model: Path, body: str = "") -> Path:
    return write_tiny_spec(tmp_path, model, body, epochs=2)


def job_for(spec_path: Path, corpus, **overrides) -> TrainingJob:
    spec = load_spec(spec_path, get_registry())
    tokenizer = load_tokenizer(spec.model.name)
    rest, _ = test_split(corpus, 0.2, 0)
    split = holdout(corpus, rest, 0.25, 0)
    config = overrides.pop("config", spec.space.default())
    return TrainingJob(corpus=corpus, encoded=encode_pairs(tokenizer, corpus, 64), train_indices=split.train,
                       validation_indices=split.validation, config=config, model_name=spec.model.name,
                       pad_token_id=tokenizer.pad_token_id, **overrides)


@pytest.mark.parametrize("family", ["tiny_bert", "tiny_deberta"])
def test_every_plugin_kind_is_wired_in(family, request, tmp_path, corpus):
    model = request.getfixturevalue(family)
    spec = write_spec(tmp_path, model, """
head_lr_multiplier = 4.0
layerwise_lr_decay = 0.8
effective_batch_size = 64
[optimizer]
use = "lion"
[scheduler]
use = "cosine"
[peft]
use = "lora"
[peft.lora]
targets = "attention"
[loss]
use = "focal"
""")
    seen = []
    job = job_for(spec, corpus, callbacks=[seen.append])
    result = fit(job)
    assert [r.epoch for r in seen] == [1, 2] and len(result.history) == 2
    assert all(np.isfinite(r.train_loss) for r in result.history)
    assert 0.0 <= result.best.metrics["overall"]["macro_f1"] <= 1.0
    assert set(result.best.metrics["per_group"]) == {c.id for c in corpus.criteria}
    trainable = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)


def test_parameter_groups_scale_head_and_layers(tiny_bert, tmp_path, corpus):
    from criteria import TrainingPlan
    from criteria.engine.model import build_model
    from criteria.engine.runtime import Runtime

    job = job_for(write_spec(tmp_path, tiny_bert), corpus)
    model = build_model(job, Runtime(), TrainingPlan(total_steps=10))
    groups = parameter_groups(model, head_lr_multiplier=10.0, layerwise_lr_decay=0.5, weight_decay=0.01)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale_of[id(named["head.classifier.weight"])] == 10.0
    assert scale_of[id(named["encoder.encoder.layer.1.attention.self.query.weight"])] == 1.0
    assert scale_of[id(named["encoder.encoder.layer.0.attention.self.query.weight"])] == 0.5
    assert scale_of[id(named["encoder.embeddings.word_embeddings.weight"])] == 0.25
    no_decay = [g for g in groups if g.get("weight_decay") == 0.0]
    assert any(id(named["head.classifier.bias"]) in map(id, g["params"]) for g in no_decay)
    assert len(scale_of) == sum(p.requires_grad for p in model.parameters())


def test_early_stopping_restores_the_best_epoch(tiny_bert, tmp_path, corpus, monkeypatch):
    from criteria.engine import fit as engine

    values = iter([0.9, 0.5, 0.4, 0.3])
    real_evaluate = engine.evaluate

    def scripted(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        result["overall"]["macro_f1"] = next(values)
        return result

    monkeypatch.setattr(engine, "evaluate", scripted)
    snapshots = []
    spec = write_spec(tmp_path, tiny_bert, "").read_text().replace("epochs = 2", "epochs = 4").replace(
        "patience = 0", "patience = 1")
    (tmp_path / "spec.toml").write_text(spec)
    job = job_for(tmp_path / "spec.toml", corpus)
    job.callbacks.append(lambda report: snapshots.append(report.epoch))
    result = fit(job)
    assert snapshots == [1, 2] and result.stopped_early and result.best_epoch == 1
    assert result.best.value == 0.9


def test_a_diverging_loss_stops_with_a_reason(tiny_bert, tmp_path, corpus):
    spec = write_spec(tmp_path, tiny_bert)
    default = load_spec(spec, get_registry()).space.default()
    config = type(default)(default.train, {**default.plugins, "loss": NanLoss()})
    with pytest.raises(TrainingDiverged, match="became nan at epoch 1"):
        fit(job_for(spec, corpus, config=config))


def test_train_command_writes_a_loadable_run_folder_and_predict_scores(tiny_bert, tmp_path, cli):
    spec = write_spec(tmp_path, tiny_bert, "tune_threshold = true\n[optimizer]\nuse = 'adamw'\n[optimizer.adamw]\nlr = 1e-3\n")
    run = tmp_path / "run"
    result = cli("train", str(spec), "--output", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held-out test posts" in result.stdout and "TF-IDF + logistic regression" in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"validation", "test", "baseline_test", "history"} <= set(metrics)
    assert json.loads((run / "spec.resolved.json").read_text())["resolved"]["optimizer.adamw.lr"] == 1e-3
    model, tokenizer, meta = load_classifier(run / "model", get_registry())
    assert meta["head"]["name"] == "linear" and len(meta["criteria"]) == 9
    with torch.inference_mode():
        batch = tokenizer(["I can't sleep at all"], ["Sleep problems"], return_tensors="pt")
        assert model(batch["input_ids"], batch["attention_mask"]).shape == (1, 2)

    posts = tmp_path / "posts.csv"
    posts.write_text("post_id,text\np1,I have not slept properly in weeks.\np2,Went hiking with friends today!\n")
    out = tmp_path / "pred.csv"
    predicted = cli("predict", str(run), "--input", str(posts), "--output", str(out))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 18 and {r["post_id"] for r in rows} == {"p1", "p2"}
    assert all(0.0 <= float(r["probability"]) <= 1.0 and r["met"] in {"0", "1"} for r in rows)


@pytest.mark.parametrize(("knobs", "frozen_depth"), [
    ("freeze_layers = 6", 1),  # 6 of 12 layers on a 2-layer model: the embeddings and layer 0
    ("freeze_layers = 12", 2),
    ("freeze_encoder = true\nunfreeze_pooler = true", 2),
])
def test_freezing_knobs_scale_to_the_model_depth(tiny_bert, tmp_path, corpus, knobs, frozen_depth):
    from criteria import TrainingPlan
    from criteria.engine.freezing import layer_depth
    from criteria.engine.model import build_model
    from criteria.engine.runtime import Runtime

    job = job_for(write_spec(tmp_path, tiny_bert, knobs), corpus)
    model = build_model(job, Runtime(), TrainingPlan(total_steps=10))
    for name, param in model.encoder.named_parameters():
        depth = layer_depth(name, 2)
        assert param.requires_grad == (depth > frozen_depth), name  # depth 3, the pooler, always trains here
    assert all(p.requires_grad for p in model.head.parameters())


def test_unfreeze_layernorm_trains_norms_under_a_frozen_encoder(tiny_bert, tmp_path, corpus):
    from criteria import TrainingPlan
    from criteria.engine.model import build_model
    from criteria.engine.runtime import Runtime

    job = job_for(write_spec(tmp_path, tiny_bert, "freeze_encoder = true\nunfreeze_layernorm = true"), corpus)
    model = build_model(job, Runtime(), TrainingPlan(total_steps=10))
    trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert trainable and all("LayerNorm" in n for n in trainable)


def test_token_dropout_masks_only_ordinary_tokens(tiny_bert, tmp_path, corpus, tokenizer):
    from criteria.engine.token_dropout import TokenDropout

    job = job_for(write_spec(tmp_path, tiny_bert, "token_dropout = 0.5"), corpus,
                  mask_token_id=tokenizer.mask_token_id, special_token_ids=tuple(tokenizer.all_special_ids))
    dropout = TokenDropout.for_job(job, "cpu")
    ids = torch.tensor([[tokenizer.cls_token_id] + list(range(2000, 2400)) + [tokenizer.sep_token_id, 0, 0]])
    torch.manual_seed(0)
    dropped = dropout(ids)
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids + [0]))
    assert torch.equal(dropped[special], ids[special])
    share = (dropped[~special] == tokenizer.mask_token_id).float().mean().item()
    assert 0.4 < share < 0.6
    assert TokenDropout.for_job(job_for(write_spec(tmp_path, tiny_bert), corpus, mask_token_id=103), "cpu") is None


def test_warmup_steps_override_the_ratio_and_are_capped():
    from types import SimpleNamespace

    from criteria.engine.optimization import training_plan

    knobs = SimpleNamespace(epochs=3, warmup_ratio=0.1, warmup_steps=0)
    assert training_plan(knobs, 10, "maximize").warmup_steps == 3
    assert training_plan(SimpleNamespace(**{**vars(knobs), "warmup_steps": 500}), 10, "maximize").warmup_steps == 30
    assert training_plan(SimpleNamespace(**{**vars(knobs), "warmup_steps": 5}), 10, "minimize").warmup_steps == 5
