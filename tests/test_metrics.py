"""criteria.metrics and criteria.baseline: real numbers checked against hand computation."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import warnings

import pytest
from criteria.engine.baseline import tfidf_baseline
from criteria.engine.metrics import (
    METRIC_NAMES,
    binary_metrics,
    classification_report_dict,
    confusion_matrix_figure,
    evaluate,
    metrics_table,
    tune_threshold,
)

# 4 positives, 6 negatives.  At threshold 0.5 the predictions are
#   labels 1 1 1 1 | 0 0 0 0 0 0
#   preds  1 1 1 0 | 1 0 0 0 0 1   ->  tp=3 fn=1 fp=2 tn=4
LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
PROBS = [0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1, 0.05, 0.55]


def test_binary_metrics_match_hand_computation():
    m = binary_metrics(LABELS, PROBS, threshold=0.5)
    assert set(METRIC_NAMES) | {"tn", "fp", "fn", "tp", "support", "positives"} <= set(m)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 2, 1, 4)
    assert m["support"] == 10 and m["positives"] == 4
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))                  # 2/3
    f1_neg = 2 * 4 / (2 * 4 + 1 + 2)                                          # 8/11
    assert m["macro_f1"] == pytest.approx((2 / 3 + f1_neg) / 2)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    assert m["mcc"] == pytest.approx((3 * 4 - 2 * 1) / math.sqrt(5 * 4 * 6 * 5))
    # ROC AUC: positive-over-negative pairs 6 + 6 + 5 + 3 = 20 of 24
    assert m["roc_auc"] == pytest.approx(20 / 24)
    # Average precision: positives at ranks 1, 2, 4, 7
    assert m["pr_auc"] == pytest.approx((1 / 1 + 2 / 2 + 3 / 4 + 4 / 7) / 4)


def test_threshold_moves_predictions():
    m = binary_metrics(LABELS, PROBS, threshold=0.25)       # 0.3 becomes positive, 0.4 too
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (4, 3, 0, 3)
    assert m["recall"] == 1.0


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_gives_nan_aucs_without_raising_or_warning(label):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = binary_metrics([label] * 5, [0.1, 0.4, 0.6, 0.8, 0.9])
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])
    assert m["support"] == 5 and m["positives"] == 5 * label
    for name in ("f1", "precision", "recall", "macro_f1", "mcc", "accuracy", "balanced_accuracy"):
        assert not math.isnan(m[name]), name
    if label == 0:                       # no positives: zero_division=0 for positive-class scores
        assert m["f1"] == 0.0 and m["recall"] == 0.0 and m["precision"] == 0.0


def test_empty_input_does_not_raise():
    m = binary_metrics([], [])
    assert m["support"] == 0 and math.isnan(m["f1"]) and math.isnan(m["roc_auc"])


def test_mismatched_lengths_and_bad_labels_raise():
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.5])
    with pytest.raises(ValueError):
        binary_metrics([0, 2], [0.5, 0.5])


def test_evaluate_groups_and_supports():
    groups = ["B.2", "A.1", "A.1", "B.2", "A.1", "C.3", "B.2", "A.1", "C.3", "C.3"]
    res = evaluate(LABELS, PROBS, groups, threshold=0.5)
    assert res["threshold"] == 0.5
    assert list(res["per_group"]) == ["A.1", "B.2", "C.3"]           # sorted
    assert res["overall"]["f1"] == binary_metrics(LABELS, PROBS, 0.5)["f1"]
    assert res["overall"]["support"] == sum(g["support"] for g in res["per_group"].values()) == 10
    assert res["overall"]["positives"] == sum(g["positives"] for g in res["per_group"].values())
    assert res["overall"]["tp"] == sum(g["tp"] for g in res["per_group"].values())
    # C.3 holds only negatives (indices 5, 8, 9): its AUCs are nan
    assert res["per_group"]["C.3"]["positives"] == 0
    assert math.isnan(res["per_group"]["C.3"]["roc_auc"])
    # A.1 = indices 1, 2, 4, 7: labels 1,1,0,0 probs .8,.6,.7,.1 -> tp 2, fp 1, tn 1
    a1 = res["per_group"]["A.1"]
    assert (a1["tp"], a1["fp"], a1["fn"], a1["tn"]) == (2, 1, 0, 1)


def test_tune_threshold_separates_a_separable_example():
    labels = [0, 0, 0, 1, 1]
    probs = [0.1, 0.6, 0.65, 0.7, 0.9]              # 0.5 is not perfect; (0.65, 0.7] is
    t = tune_threshold(labels, probs, "f1")
    assert 0 < t < 1
    assert t == pytest.approx(0.675)
    m = binary_metrics(labels, probs, t)
    assert m["f1"] == 1.0 and m["accuracy"] == 1.0
    assert binary_metrics(labels, probs, 0.5)["f1"] < 1.0


def test_tune_threshold_ties_prefer_half():
    labels = [0, 0, 1, 1]
    probs = [0.1, 0.2, 0.8, 0.9]                   # everything in (0.2, 0.8] separates perfectly
    assert tune_threshold(labels, probs, "f1") == 0.5
    assert tune_threshold(labels, probs, "mcc") == 0.5


def test_tune_threshold_improves_f1_on_imbalanced_example():
    rng = random.Random(0)
    labels = [1] * 10 + [0] * 90
    # an under-confident model: positives score 0.25-0.45, negatives mostly lower
    probs = [rng.uniform(0.25, 0.45) for _ in range(10)] + [rng.uniform(0.0, 0.3) for _ in range(90)]
    at_half = binary_metrics(labels, probs, 0.5)["f1"]
    t = tune_threshold(labels, probs, "f1")
    tuned = binary_metrics(labels, probs, t)["f1"]
    assert at_half == 0.0
    assert 0 < t < 0.5
    assert tuned > 0.7 and tuned > at_half
    assert tune_threshold(labels, probs, "macro_f1") < 0.5


def test_tune_threshold_degenerate_and_bad_metric():
    assert tune_threshold([1, 1, 1], [0.2, 0.3, 0.9]) == 0.5
    assert tune_threshold([], []) == 0.5
    with pytest.raises(ValueError):
        tune_threshold([0, 1], [0.2, 0.8], "roc_auc")
    with pytest.raises(ValueError):
        tune_threshold([0, 1], [0.2, 0.8], "nope")


def test_tune_threshold_many_candidates_is_fast_and_good():
    rng = random.Random(1)
    labels = [rng.random() < 0.2 for _ in range(3000)]
    labels = [int(x) for x in labels]
    probs = [min(1.0, max(0.0, 0.3 * y + rng.gauss(0.3, 0.12))) for y in labels]
    t = tune_threshold(labels, probs, "f1")
    assert 0 < t < 1
    assert binary_metrics(labels, probs, t)["f1"] >= binary_metrics(labels, probs, 0.5)["f1"]


def test_confusion_matrix_figure_saves_png(tmp_path):
    from matplotlib.figure import Figure

    fig = confusion_matrix_figure(LABELS, PROBS, threshold=0.5, title="A.1")
    assert isinstance(fig, Figure)
    out = tmp_path / "cm.png"
    fig.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"3", "2", "1", "4"} <= texts                      # tp, fp, fn, tn drawn in the cells


def test_classification_report_dict():
    rep = classification_report_dict(LABELS, PROBS, threshold=0.5)
    assert {"not met", "met", "accuracy", "macro avg", "weighted avg"} <= set(rep)
    assert rep["met"]["precision"] == pytest.approx(0.6)
    assert rep["met"]["recall"] == pytest.approx(0.75)
    assert rep["met"]["support"] == 4 and rep["not met"]["support"] == 6
    # one class present: both names still listed, no exception
    rep1 = classification_report_dict([0, 0, 0], [0.1, 0.7, 0.2])
    assert rep1["met"]["f1-score"] == 0.0


def test_metrics_table_rows_and_formatting():
    from rich.console import Console
    from rich.table import Table

    groups = ["B.2", "A.1", "A.1", "B.2", "A.1", "C.3", "B.2", "A.1", "C.3", "C.3"]
    res = evaluate(LABELS, PROBS, groups)
    table = metrics_table(res, title="dev")
    assert isinstance(table, Table)
    assert table.row_count == 1 + 3
    headers = [c.header for c in table.columns]
    assert headers[1:] == ["macro_f1", "f1", "precision", "recall", "roc_auc", "pr_auc", "mcc", "support", "positives"]
    first_col = list(table.columns[0].cells)
    assert first_col == ["overall", "A.1", "B.2", "C.3"]
    roc_cells = list(table.columns[headers.index("roc_auc")].cells)
    assert roc_cells[0] == f"{20 / 24:.3f}"
    assert roc_cells[3] == "-"                                 # C.3 has one class: nan -> "-"
    assert list(table.columns[headers.index("support")].cells)[0] == "10"
    console = Console(record=True, width=200)
    console.print(table)
    assert "overall" in console.export_text()


# ---------------------------------------------------------------------------------------------
# baseline
# ---------------------------------------------------------------------------------------------

_FILLER = ("today went to the store and saw my friend we talked about work music weather food "
           "coffee movies school family weekend plans city park dog cat book game").split()


def _synthetic(n: int, rng: random.Random):
    """Posts of random filler words; some contain "sad", some "tired" (independently).
    A.1 is met iff the post contains "sad", A.2 iff it contains "tired"."""
    texts, groups, labels = [], [], []
    for _ in range(n):
        words = rng.choices(_FILLER, k=rng.randint(6, 14))
        has_sad, has_tired = rng.random() < 0.4, rng.random() < 0.3
        if has_sad:
            words.insert(rng.randrange(len(words) + 1), "sad")
        if has_tired:
            words.insert(rng.randrange(len(words) + 1), "tired")
        text = " ".join(words)
        texts += [text, text]
        groups += ["A.1", "A.2"]
        labels += [int(has_sad), int(has_tired)]
    return texts, groups, labels


def test_tfidf_baseline_learns_an_easy_task():
    rng = random.Random(0)
    tr_x, tr_g, tr_y = _synthetic(400, rng)
    ev_x, ev_g, ev_y = _synthetic(100, rng)
    probs = tfidf_baseline(tr_x, tr_g, tr_y, ev_x, ev_g, seed=0)
    assert len(probs) == len(ev_x)
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probs)
    res = evaluate(ev_y, probs, ev_g)
    assert res["overall"]["macro_f1"] >= 0.9
    for gid in ("A.1", "A.2"):
        assert res["per_group"][gid]["macro_f1"] >= 0.9, gid
        assert res["per_group"][gid]["roc_auc"] >= 0.95, gid
    # deterministic
    assert tfidf_baseline(tr_x, tr_g, tr_y, ev_x, ev_g, seed=0) == probs


def test_tfidf_baseline_single_class_and_unseen_criteria():
    rng = random.Random(2)
    tr_x, tr_g, tr_y = _synthetic(40, rng)
    # B.1 is never met in training, B.2 always met
    tr_x += ["nothing here at all", "just some words", "more filler text", "always yes", "yes again"]
    tr_g += ["B.1", "B.1", "B.1", "B.2", "B.2"]
    tr_y += [0, 0, 0, 1, 1]
    ev_x = ["a sad post", "a tired post", "anything", "whatever", "unseen criterion post"]
    ev_g = ["A.1", "A.2", "B.1", "B.2", "Z.9"]
    probs = tfidf_baseline(tr_x, tr_g, tr_y, ev_x, ev_g)
    assert len(probs) == 5
    assert probs[2] == 0.0 and probs[3] == 1.0
    assert probs[4] == pytest.approx(sum(tr_y) / len(tr_y))     # unseen: global training prior
    assert probs[0] > 0.5 and probs[1] > 0.5


def test_tfidf_baseline_empty_eval_and_length_checks():
    assert tfidf_baseline(["a b", "c d"], ["A", "A"], [0, 1], [], []) == []
    with pytest.raises(ValueError):
        tfidf_baseline(["a b"], ["A", "A"], [0, 1], [], [])


def test_modules_do_not_import_torch():
    code = "import sys, criteria.engine.metrics, criteria.engine.baseline; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
