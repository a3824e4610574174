"""Formulations, the frozen-layer cache, reports inside epochs and per-criterion thresholds."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from builtin_plugins import BUILTINS, one_epoch_job, write_tiny_spec
from criteria.data.batching import UnitPairs, collate
from criteria.engine import frozen_cache
from criteria.engine.fit import fit
from criteria.engine.metrics import evaluate, tune_thresholds
from criteria.engine.model import build_model, load_classifier, save_classifier
from criteria.engine.runtime import Runtime
from criteria.plugin.kinds import TrainingPlan

FORMULATIONS = ["pair", "multilabel", "biencoder"]


def _job(tmp_path, model, formulation: str, train: str = "", **overrides):
    spec = write_tiny_spec(tmp_path, model, f'[formulation]\nuse = "{formulation}"\n', train=train)
    job = one_epoch_job(spec)
    for key, value in overrides.items():
        setattr(job, key, value)
    return job


def test_units_score_every_pair_once(tiny_bert, tmp_path):
    for name in FORMULATIONS:
        job = _job(tmp_path, tiny_bert, name)
        units = job.encoded.units
        assert len(units.pair_unit) == len(job.corpus.pairs)
        seen = {(int(u), int(s)) for u, s in zip(units.pair_unit, units.pair_slot)}
        assert len(seen) == len(job.corpus.pairs)  # no two pairs share a unit's slot
        expected_units = len(job.corpus.pairs) if name == "pair" else len(job.corpus.posts)
        assert len(units) == expected_units and units.slots == (1 if name == "pair" else len(job.corpus.criteria))
        assert (units.criteria is not None) == (name == "biencoder")


@pytest.mark.parametrize("name", FORMULATIONS)
def test_each_formulation_trains_saves_and_predicts_the_same(name, tiny_bert, tmp_path):
    from criteria.engine.predict import predict_file
    from criteria.plugin.registry import get_registry

    job = _job(tmp_path, tiny_bert, name, train="tune_threshold = true\nthreshold_scope = \"per_criterion\"")
    result = fit(job)
    assert len(result.history) == 1 and math.isfinite(result.history[0].train_loss)
    assert isinstance(result.threshold, dict) and set(result.threshold) == {c.id for c in job.corpus.criteria}
    tokenizer = __import__("criteria.engine.model", fromlist=["load_tokenizer"]).load_tokenizer(str(tiny_bert))
    folder = save_classifier(result.model, tokenizer, tmp_path / "model", {
        "head": {"name": job.config.head.name, "config": job.config.head.config.model_dump()},
        "formulation": {"name": name, "config": job.config.formulation.config.model_dump()},
        "criteria": [vars(c) for c in job.corpus.criteria], "max_length": 64, "threshold": result.threshold,
    })
    loaded, _, meta = load_classifier(folder, get_registry())
    members = UnitPairs.of(job.encoded.units, job.validation_indices[:40])
    batch = collate(job.encoded, np.arange(min(4, len(members))), job.corpus.labels, job.pad_token_id, members)
    result.model.eval()
    with torch.inference_mode():
        before = batch.pair_logits(result.model(batch.input_ids, batch.attention_mask, batch.token_type_ids))
        after = batch.pair_logits(loaded(batch.input_ids, batch.attention_mask, batch.token_type_ids))
    torch.testing.assert_close(before, after)
    posts = tmp_path / "posts.csv"
    posts.write_text("post_id,text\np1,I have not slept in days.\np2,A fine walk in the park.\n")
    rows = predict_file(folder, posts, tmp_path / "out.csv", get_registry())
    assert rows == 2 * len(job.corpus.criteria)
    assert len(list(csv.DictReader((tmp_path / "out.csv").open()))) == rows


def test_a_biencoder_scores_criteria_it_was_not_trained_on(tiny_bert, tmp_path):
    from criteria.engine.model import load_tokenizer
    from criteria.engine.predict import predict_file
    from criteria.errors import CriteriaError
    from criteria.plugin.registry import get_registry

    for name, can in (("biencoder", True), ("multilabel", False)):
        job = _job(tmp_path, tiny_bert, name)
        result = fit(job)
        folder = save_classifier(result.model, load_tokenizer(str(tiny_bert)), tmp_path / name / "model", {
            "head": {"name": job.config.head.name, "config": job.config.head.config.model_dump()},
            "formulation": {"name": name, "config": job.config.formulation.config.model_dump()},
            "criteria": [vars(c) for c in job.corpus.criteria], "max_length": 64, "threshold": 0.5,
        })
        other = tmp_path / "other.json"
        other.write_text('{"criteria": [{"id": "X.1", "text": "Talks about feeling lonely."}]}')
        posts = tmp_path / "posts.csv"
        posts.write_text("post_id,text\np1,Nobody calls me anymore.\n")
        if can:
            assert predict_file(folder, posts, tmp_path / "o.csv", get_registry(), criteria_json=other) == 1
            assert next(csv.DictReader((tmp_path / "o.csv").open()))["criterion_id"] == "X.1"
        else:
            with pytest.raises(CriteriaError, match="scores only the criteria it was trained on"):
                predict_file(folder, posts, tmp_path / "o.csv", get_registry(), criteria_json=other)


@pytest.mark.parametrize("name", FORMULATIONS)
def test_logits_with_and_without_the_frozen_layer_cache_agree(name, tiny_bert, tmp_path):
    """The bottom layer of the tiny model, computed once and stored in 16-bit, gives the logits
    the whole model gives (in evaluation mode, where neither path drops anything)."""
    job = _job(tmp_path, tiny_bert, name, train="freeze_layers = 6")  # 6 of 12 -> 1 of the tiny model's 2
    runtime = Runtime()
    model = build_model(job, runtime, TrainingPlan(total_steps=1)).eval()
    depth = frozen_cache.frozen_depth(model.encoder, job.config, runtime)
    assert depth == 1
    members = UnitPairs.of(job.encoded.units, job.validation_indices[:60])
    batch = collate(job.encoded, np.arange(min(6, len(members))), job.corpus.labels, job.pad_token_id, members)
    with torch.inference_mode():
        whole = batch.pair_logits(model(batch.input_ids, batch.attention_mask, batch.token_type_ids))
    cut = frozen_cache.PrefixCut(model.encoder, depth)
    states, hit = frozen_cache.compute_states(model, cut, job.encoded, f"test-{name}", runtime, job.pad_token_id, 64)
    cut.install()
    reads = model.reads_criteria
    frozen_cache.states_for(cut, states, batch.units, batch.input_ids.shape[1], "cpu", torch.float32, reads,
                            model.criteria_input_ids.shape[1] if reads else None)
    with torch.inference_mode():
        cached = batch.pair_logits(model(batch.input_ids, batch.attention_mask, batch.token_type_ids))
    cut.restore()
    assert not hit and len(model.encoder.encoder.layer) == 2  # put back whole
    torch.testing.assert_close(cached, whole, atol=2e-3, rtol=2e-3)  # states are kept in 16-bit


def test_trials_sharing_a_key_compute_frozen_states_once(tiny_bert, tmp_path, monkeypatch):
    frozen_cache.clear_memory()
    computed = []
    real = frozen_cache._compute

    def counting(*args, **kwargs):
        computed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(frozen_cache, "_compute", counting)
    for dropout in (0.1, 0.2):  # two "trials" that differ above the frozen part only
        job = _job(tmp_path, tiny_bert, "multilabel", train=f"freeze_layers = 6\nhidden_dropout = {dropout}")
        result = fit(job)
        assert len(result.model.encoder.encoder.layer) == 2  # the returned model is whole again
    assert len(computed) == 1
    frozen_cache.clear_memory()


def test_the_cache_stays_off_where_something_random_or_trainable_acts_below(tiny_bert, tmp_path):
    runtime = Runtime()
    for train, why in (("freeze_layers = 0", "nothing frozen"), ("freeze_layers = 6\ntoken_dropout = 0.1", "dropout"),
                       ("freeze_layers = 6\nunfreeze_layernorm = true", "norms train"),
                       ("freeze_layers = 6\nfrozen_cache = false", "switched off")):
        job = _job(tmp_path, tiny_bert, "pair", train=train)
        model = build_model(job, runtime, TrainingPlan(total_steps=1))
        assert frozen_cache.frozen_depth(model.encoder, job.config, runtime) is None, why


def test_several_reports_per_epoch_reach_the_callbacks_with_comparable_steps(tiny_bert, tmp_path):
    seen = []
    job = _job(tmp_path, tiny_bert, "pair", reports_per_epoch=3, callbacks=[lambda r: seen.append(r)])
    fit(job)
    assert [(r.epoch, r.part, r.parts) for r in seen] == [(1, 1, 3), (1, 2, 3), (1, 3, 3)]
    assert all(math.isfinite(r.value) for r in seen)


def test_per_criterion_thresholds_are_tuned_on_each_criterion():
    labels = [0, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    probs = [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.2, 0.3]
    groups = ["A", "A", "A", "A", "B", "B", "B", "B", "C", "C"]
    thresholds = tune_thresholds(labels, probs, groups, metric="macro_f1")
    assert 0.2 < thresholds["A"] < 0.3 and 0.7 < thresholds["B"] < 0.8  # each separates its own criterion
    overall = evaluate(labels, probs, groups, thresholds)
    assert overall["per_group"]["A"]["macro_f1"] == 1.0 and overall["per_group"]["B"]["macro_f1"] == 1.0
    assert evaluate(labels, probs, groups, 0.5)["per_group"]["A"]["macro_f1"] < 1.0


def test_the_formulation_kind_lists_its_builtins():
    assert set(BUILTINS.plugins("formulation")) >= set(FORMULATIONS)
