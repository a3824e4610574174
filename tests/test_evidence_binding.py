"""Evidence binding: the sentence metrics, sentence pooling, the joint loss, training with every
built-in formulation, saving and loading, and `criteria predict --evidence`."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from criteria.engine.evidence import sentence_states
from criteria.engine.evidence_metrics import EVIDENCE_METRICS, evidence_metrics, pair_metrics
from criteria.engine.predict import predict_file
from criteria.plugin.registry import get_registry
from criteria.spec.load import load_spec
from criteria.study.prepare import make_job, prepare_data
from criteria.study.single import train_from_spec

NAN = float("nan")


# --- metrics ---------------------------------------------------------------------------------


def test_pair_metrics_by_hand():
    # sentences ranked 2, 0, 3, 1; evidence: 0 and 1
    m = pair_metrics(np.array([0.6, 0.1, 0.9, 0.3]), [0, 1])
    assert m["evidence_mrr"] == 0.5  # the first evidence sentence is second
    ideal = 1 + 1 / math.log2(3)
    assert m["evidence_ndcg_at_3"] == pytest.approx((1 / math.log2(3)) / ideal)
    assert m["evidence_recall_at_3"] == 0.5  # sentence 1 ranks fourth
    assert m["evidence_f1"] == pytest.approx(2 * 1 / (2 + 2))  # predicted {0, 2}, evidence {0, 1}


def test_the_top_sentence_is_always_predicted_and_unread_sentences_rank_last():
    # nothing reaches 0.5: the top sentence is predicted anyway (a met pair has evidence)
    assert pair_metrics(np.array([0.2, 0.4, 0.1]), [1])["evidence_f1"] == 1.0
    # the evidence sentence was cut off by max_length: it ranks last and is never predicted
    m = pair_metrics(np.array([0.2, 0.1, NAN]), [2])
    assert m["evidence_mrr"] == pytest.approx(1 / 3) and m["evidence_f1"] == 0.0
    assert m["evidence_recall_at_3"] == 1.0  # three sentences: all of them are the top 3


def test_ties_rank_in_sentence_order():
    assert pair_metrics(np.array([0.5, 0.5, 0.5]), [1])["evidence_mrr"] == 0.5


def test_evidence_metrics_average_over_pairs_overall_and_per_criterion():
    probs = {0: np.array([0.9, 0.1]), 1: np.array([0.1, 0.9]), 2: np.array([0.3, 0.8]), 7: np.array([0.5])}
    gold = {0: (0,), 1: (0,), 2: (1,)}  # pair 7 has no evidence: left out
    found = evidence_metrics(probs, gold, {0: "A.1", 1: "A.1", 2: "A.2", 7: "A.2"})
    assert found["overall"]["evidence_mrr"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert found["overall"]["evidence_pairs"] == 3
    assert found["per_group"]["A.1"]["evidence_mrr"] == 0.75 and found["per_group"]["A.2"]["evidence_pairs"] == 1


# --- pooling -----------------------------------------------------------------------------------


def test_a_sentence_state_is_the_mean_of_its_tokens_and_virtual_tokens_are_in_none():
    hidden = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    ids = torch.tensor([[-1, 0, 0, 1, -1], [-1, 1, 1, 1, -1]])
    states = sentence_states(hidden, ids)
    assert states.shape == (2, 2, 3)
    torch.testing.assert_close(states[0, 0], hidden[0, 1:3].mean(0))
    torch.testing.assert_close(states[0, 1], hidden[0, 3])
    assert torch.equal(states[1, 0], torch.zeros(3))  # no tokens
    # a PEFT method prepended two virtual tokens: the sentences keep their own tokens
    prompted = torch.cat([torch.full((2, 2, 3), 1000.0), hidden], dim=1)
    torch.testing.assert_close(sentence_states(prompted, ids), states)


# --- training ----------------------------------------------------------------------------------


def write_spec(folder: Path, model: Path, formulation: str, extra: str = "") -> Path:
    spec = folder / "spec.toml"
    spec.write_text(f"""
[study]
name = "evidence-binding"
seed = 3
[data]
max_length = 64
[model]
name = "{model}"
[train]
epochs = 1
batch_size = 64
eval_batch_size = 256
evidence_sentences = false
{extra if "evidence_loss_weight" in extra else "evidence_loss_weight = 0.5  # on: off by default"}
[formulation]
use = "{formulation}"
""")
    return spec


def test_the_evidence_loss_is_a_binary_cross_entropy_over_each_pairs_read_sentences(tiny_bert, tmp_path):
    from criteria.data.batching import UnitPairs, collate

    spec = load_spec(write_spec(tmp_path, tiny_bert, "multilabel"), get_registry())
    data = prepare_data(spec)
    config = spec.space.default()
    task = data.evidence_task(config.formulation)
    encoded = data.encode(config.formulation)
    pairs = sorted(task.gold)[:30] + [i for i in range(len(data.corpus.pairs)) if i not in task.gold][:30]
    members = UnitPairs.of(encoded.units, pairs)
    batch = collate(encoded, np.arange(len(members)), data.evidence.corpus.labels, 0, members)
    ids = task.sentence_ids(batch)
    logits = torch.randn(len(members), int(ids.max()) + 1, encoded.units.slots)
    expected, skipped = [], 0
    for position, index in enumerate(batch.indices.tolist()):
        if index not in task.gold:
            continue
        row, slot = int(batch.rows[position]), int(batch.slots[position])
        read = [s for s in range(logits.shape[1]) if (ids[row] == s).any()]
        target = torch.tensor([1.0 if s in task.gold[index] else 0.0 for s in read])
        if not target.any():  # its evidence was cut off by max_length: nothing to learn from this pair
            skipped += 1
            continue
        expected.append(torch.nn.functional.binary_cross_entropy_with_logits(logits[row, read, slot], target))
    # every pair with evidence among the sentences read, none without (max_length = 64 cuts some off)
    assert len(expected) + skipped == 30 and len(expected) >= 20
    torch.testing.assert_close(task.loss(batch, ids, logits), torch.stack(expected).mean())


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory):
    """One run per formulation, trained once for the tests below: ``(spec, result, run folder)``."""
    runs = {}

    def train(formulation: str):
        if formulation not in runs:
            folder = tmp_path_factory.mktemp(f"evidence-{formulation}")
            spec = load_spec(write_spec(folder, tiny_bert, formulation), get_registry())
            runs[formulation] = spec, train_from_spec(spec, folder / "run", baseline=False), folder / "run"
        return runs[formulation]

    return train


@pytest.mark.parametrize("formulation", ["multilabel", "pair", "biencoder"])
def test_each_formulation_trains_evidence_binding_and_measures_it(trained, formulation):
    _, result, run = trained(formulation)
    for metrics in (result.validation, result.test):
        assert set(EVIDENCE_METRICS) <= set(metrics["overall"])
        assert metrics["overall"]["evidence_pairs"] > 0
        assert all(0.0 <= metrics["overall"][name] <= 1.0 for name in EVIDENCE_METRICS)
        assert any("evidence_mrr" in values for values in metrics["per_group"].values())
    assert (run / "model" / "evidence.pt").is_file()


def test_a_zero_evidence_weight_trains_criteria_matching_alone(tiny_bert, tmp_path):
    spec = load_spec(write_spec(tmp_path, tiny_bert, "multilabel", "evidence_loss_weight = 0"), get_registry())
    data = prepare_data(spec)
    config = spec.space.default()
    job = make_job(spec, data, config, data.study_indices[:200], data.study_indices[200:400])
    assert job.evidence is None
    result = train_from_spec(spec, tmp_path / "run", baseline=False)
    assert "evidence_mrr" not in result.validation["overall"]
    assert not (tmp_path / "run" / "model" / "evidence.pt").exists()
    with pytest.raises(Exception, match="without evidence binding"):
        predict_file(tmp_path / "run", posts_file(tmp_path), tmp_path / "out.csv", get_registry(), evidence_top=2)


def posts_file(folder: Path) -> Path:
    path = folder / "posts.csv"
    path.write_text("post_id,text\n"
                    "q1,I have not slept properly in weeks. Food tastes like nothing. The bus was late.\n"
                    "q2,Went hiking with friends today.\n")
    return path


@pytest.mark.parametrize("formulation", ["multilabel", "pair"])
def test_predict_evidence_lists_the_top_sentences_of_each_met_pair(trained, tmp_path, cli, formulation):
    _, _, trained_run = trained(formulation)
    run = shutil.copytree(trained_run, tmp_path / "run")
    # a threshold of 0 meets every pair, so that every row must list its evidence (a tiny model
    # trained for one epoch may meet none at its tuned threshold)
    metadata_file = run / "model" / "criteria_model.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["threshold"] = 0.0
    metadata_file.write_text(json.dumps(metadata))
    out = tmp_path / "predictions.csv"
    done = cli("predict", str(run), "--input", str(posts_file(tmp_path)), "--output", str(out),
               "--evidence", "--evidence-top", "2")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["post_id", "criterion_id", "criterion", "probability", "met", "evidence"]
    q1 = {"I have not slept properly in weeks.", "Food tastes like nothing.", "The bus was late."}
    assert len(rows) == 2 * 9 and all(row["met"] == "1" for row in rows)
    for row in rows:
        shown = json.loads(row["evidence"])
        assert 1 <= len(shown) <= 2
        assert {s["sentence"] for s in shown} <= (q1 if row["post_id"] == "q1" else {"Went hiking with friends today."})
        scores = [s["probability"] for s in shown]
        assert scores == sorted(scores, reverse=True) and all(0 <= p <= 1 for p in scores)
        assert len(shown) == (2 if row["post_id"] == "q1" else 1)  # the top 2, or all the post has


def test_a_saved_model_scores_sentences_as_it_did_in_training(trained):
    from criteria.engine.model import load_classifier
    from criteria.engine.predict import default_runtime
    from criteria.study.prepare import evaluate_indices

    spec, result, run = trained("multilabel")
    model, _, metadata = load_classifier(run / "model", get_registry())
    assert metadata["evidence"] == {"sentences": "rule", "slots": 9}
    data = prepare_data(spec)
    again, _, _ = evaluate_indices(model, data, spec.space.default(), default_runtime(get_registry()),
                                   data.test_indices, result.fit.threshold)
    for name in EVIDENCE_METRICS:
        assert again["overall"][name] == pytest.approx(result.test["overall"][name], abs=1e-6)
