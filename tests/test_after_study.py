"""What a study leaves behind and what follows it, on one tiny study run once for the module: a
report per trial (following the published schema, in the output folder and MLflow), models kept
for the best K trials only, the ensemble of the best K, the disk used, and `criteria reproduce`."""

from __future__ import annotations

import json
import os
import shutil
import types
from pathlib import Path

import numpy as np
import optuna
import pytest
from criteria import hookimpl
from criteria.cli import main
from criteria.plugin.registry import Registry
from criteria.spec.load import load_spec
from criteria.study.reports import report_schema
from tiny_models import NanLoss

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore::UserWarning")

SCHEMA = Path(__file__).parent.parent / "docs" / "schemas" / "trial-report.schema.json"


def test_registry() -> Registry:
    @hookimpl
    def register_losses(register):
        register(NanLoss)

    registry = Registry.from_entry_points()
    module = types.ModuleType("after_study_plugins")
    module.register_losses = register_losses
    registry.add_module(module, distribution="tests", version="0")
    return registry


test_registry.__test__ = False  # type: ignore[attr-defined]

SPEC = """
[study]
name = "after-study"
trials = 4
ensemble = 2
seed = 11
[[study.enqueue]]
loss = "nan"
[[study.enqueue]]
loss = "cross_entropy"
"optimizer.adamw.lr" = 3e-3
[[study.enqueue]]
loss = "cross_entropy"
"optimizer.adamw.lr" = 1e-3
[[study.enqueue]]
loss = "cross_entropy"
"optimizer.adamw.lr" = 1e-4
[data]
max_length = 64
[model]
name = "{model}"
[train]
epochs = 1
batch_size = 64
eval_batch_size = 256
freeze_layers = 6
deterministic = true
evidence_sentences = false
evidence_loss_weight = 0.5
[sampler]
use = "random"
[pruner]
use = "none"
[optimizer]
use = "adamw"
[optimizer.adamw]
lr = {{low = 1e-4, high = 3e-3, log = true}}
[peft]
use = "none"
[loss]
use = ["cross_entropy", "nan"]
[formulation]
use = "multilabel"
"""


@pytest.fixture(scope="module")
def done(tiny_bert, tmp_path_factory):
    """The study, run and exported in a folder of its own."""
    from criteria.study.report import export_best
    from criteria.study.runner import run_study

    folder = tmp_path_factory.mktemp("after-study")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        patch.setenv("CRITERIA_CACHE_DIR", str(folder / "cache"))
        registry = test_registry()
        (folder / "study.toml").write_text(SPEC.format(model=tiny_bert))
        spec = load_spec(folder / "study.toml", registry)
        study, summary, data, tracker = run_study(spec, output=folder / "out")
        export = export_best(study, spec, data, folder / "out", tracker)
        tracker.finish()
    return types.SimpleNamespace(folder=folder, out=folder / "out", spec=spec, study=study, export=export,
                                 registry=registry, data=data, tracking=f"sqlite:///{folder / 'mlflow.db'}")


@pytest.fixture
def inside(done, monkeypatch, capsys):
    """Run `criteria ...` in-process in the study's folder, with the study's registry."""
    import importlib

    app_module = importlib.import_module("criteria.cli.app")  # `criteria.cli.app` is also the Typer app

    monkeypatch.chdir(done.folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", done.tracking)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr(app_module, "registry", lambda: done.registry)

    def run(*args: str) -> tuple[int, str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
        out, err = capsys.readouterr()
        return code, out + err

    return run


def complete_by_value(done) -> list[int]:
    complete = [t for t in done.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return [t.number for t in sorted(complete, key=lambda t: (-t.value, t.number))]


# --- reports ---------------------------------------------------------------------------------


def test_the_published_schema_is_current():
    assert SCHEMA.is_file(), "write it with: criteria study schema -o docs/schemas/trial-report.schema.json"
    assert json.loads(SCHEMA.read_text()) == report_schema(), \
        "the report changed: criteria study schema -o docs/schemas/trial-report.schema.json"


def test_every_trial_leaves_a_report_that_follows_the_schema(done):
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    reports = {n: json.loads((done.out / "reports" / f"trial-{n}.json").read_text()) for n in range(4)}
    for report in reports.values():
        validator.validate(report)
    failed = reports[0]
    assert failed["state"] == "failed" and failed["reason"].startswith("diverged") and failed["values"] is None
    for number in (1, 2, 3):
        report = reports[number]
        trial = done.study.trials[number]
        assert report["state"] == "complete" and report["reason"] is None
        assert report["values"] == {"macro_f1": pytest.approx(trial.value)}
        assert report["params"]["loss"] == "cross_entropy" and report["configuration"]["train.deterministic"] is True
        (fold,) = report["folds"]
        assert fold["split"] == "holdout" and fold["value"] == pytest.approx(trial.value)
        (epoch,) = fold["reports"]
        assert {"macro_f1", "loss", "evidence_mrr", "evidence_ndcg_at_3"} <= set(epoch["metrics"])
        assert set(epoch["per_criterion"]) == {f"A.{i}" for i in range(1, 10)}
        assert report["data"]["sha256"] == done.data.corpus.sha256 and report["seed"] == 11
        assert report["versions"]["plugins"]["loss"] == {"name": "cross_entropy", "distribution": "criteria",
                                                         "version": "0.1.0"}
        assert report["versions"]["packages"]["torch"] and report["hardware"]["runtime"].startswith("cpu")
        assert report["time"]["seconds"] > 0


def test_each_trials_report_is_in_its_mlflow_run(done):
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(done.tracking)
    experiment = client.get_experiment_by_name("after-study")
    runs = client.search_runs([experiment.experiment_id], "tags.`criteria.trial` != ''")
    assert len(runs) == 4
    for run in runs:
        mlflow.set_tracking_uri(done.tracking)
        report = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/report.json")
        assert report["trial"] == int(run.data.tags["criteria.trial"]) and report["mlflow_run_id"] == run.info.run_id


# --- disk ----------------------------------------------------------------------------------------


def test_only_the_best_k_trials_keep_their_models(done):
    ranked = complete_by_value(done)
    kept = sorted(int(p.name.split("-")[1]) for p in (done.out / "kept").iterdir())
    assert kept == sorted(ranked[:2])  # keep_models = 1, but the ensemble of 2 needs two
    dropped = json.loads((done.out / "reports" / f"trial-{ranked[2]}.json").read_text())["model"]
    assert dropped == {"kept": False, "folder": None, "bytes": None, "not_kept": None}  # its report says so
    best = json.loads((done.out / "reports" / f"trial-{ranked[0]}.json").read_text())["model"]
    assert best["kept"] and best["bytes"] > 0
    # frozen layers are referenced, not copied: no encoder weights in a kept model
    assert not list((done.out / "kept").rglob("*.safetensors"))
    # the exported best model links the kept one: the same bytes on disk once
    for name in ("trained.pt", "head.pt"):
        exported = done.out / "best-model" / "model" / name
        assert os.stat(exported).st_ino == os.stat(done.out / "kept" / f"trial-{ranked[0]}" / "model" / name).st_ino


def test_status_shows_the_disk_used(done, inside):
    code, text = inside("study", "status", "study.toml", "--output", "out")
    assert code == 0, text
    assert "disk used:" in text and "kept models" in text and "2 trial(s) keep their model" in text
    assert "4 report(s)" in text


# --- ensemble --------------------------------------------------------------------------------


def test_the_ensemble_averages_its_members_at_its_own_threshold(done):
    from criteria.engine.ensemble import EnsembleScorer
    from criteria.engine.predict import ModelScorer, default_runtime, load_scorer, predictions

    ensemble = done.export.ensemble
    assert ensemble.trials == complete_by_value(done)[:2]
    metrics = json.loads((done.out / "ensemble" / "metrics.json").read_text())
    assert metrics["test"]["overall"]["macro_f1"] == pytest.approx(ensemble.test["overall"]["macro_f1"])
    assert "evidence_mrr" in metrics["test"]["overall"]
    scorer = load_scorer(done.out / "ensemble", done.registry)
    assert isinstance(scorer, EnsembleScorer) and len(scorer.members) == 2
    runtime = default_runtime(done.registry)
    posts = {"q1": "I cannot sleep at all. Nothing is fun anymore.", "q2": "A fine walk by the sea."}
    scored = scorer.prepare(runtime).score(posts, runtime, evidence=True)
    members = [m.score(posts, runtime) for m in scorer.members]
    assert all(isinstance(m, ModelScorer) for m in scorer.members)
    np.testing.assert_allclose(scored.probs, np.mean([m.probs for m in members], axis=0))
    assert scored.threshold == json.loads((done.out / "ensemble" / "model" / "criteria_model.json").read_text())["threshold"]
    rows = predictions(scored, evidence_top=2)
    assert len(rows) == 18 and all(r.evidence for r in rows if r.met)


def test_the_ensemble_is_an_mlflow_model_too(done):
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(done.tracking)
    experiment = client.get_experiment_by_name("after-study")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`criteria.study` = 'after-study'")
    mlflow.set_tracking_uri(done.tracking)
    model = mlflow.pyfunc.load_model(f"runs:/{parent.info.run_id}/ensemble")
    frame = model.predict(pd.DataFrame({"post_id": ["q1"], "text": ["I cannot sleep at all."]}),
                          params={"evidence_top": 1})
    assert list(frame.columns) == ["post_id", "criterion_id", "criterion", "probability", "met", "evidence"]
    assert len(frame) == 9
    assert parent.data.metrics["ensemble_test_macro_f1"] == pytest.approx(done.export.ensemble.test["overall"]["macro_f1"])


# --- reproduce -----------------------------------------------------------------------------------


def test_a_deterministic_trial_reproduces_exactly(done, inside):
    best = complete_by_value(done)[0]
    code, text = inside("reproduce", "study.toml", "--trial", str(best), "--output", "out")
    assert code == 0, text
    text = " ".join(text.split())  # the console wraps long lines where it is narrow
    assert "reproduced:" in text and "largest difference 0 " in text and "out/reports/trial-" in text


def test_a_difference_beyond_the_tolerance_exits_1(done, inside, tmp_path):
    best = complete_by_value(done)[0]
    tampered = tmp_path / "out"
    shutil.copytree(done.out / "reports", tampered / "reports")
    path = tampered / "reports" / f"trial-{best}.json"
    report = json.loads(path.read_text())
    report["folds"][0]["reports"][-1]["metrics"]["roc_auc"] += 0.01
    path.write_text(json.dumps(report))
    code, text = inside("reproduce", "study.toml", "--trial", str(best), "--output", str(tampered),
                        "--tolerance", "0.005")
    assert code == 1, text
    assert "not reproduced: 1 number(s) differ by more than the tolerance" in text and "roc_auc" in text


def test_reproduce_finds_a_trial_by_its_mlflow_run(done, inside):
    from mlflow.tracking import MlflowClient

    number = complete_by_value(done)[1]
    client = MlflowClient(done.tracking)
    experiment = client.get_experiment_by_name("after-study")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`criteria.trial` = '{number}'")
    code, text = inside("reproduce", "study.toml", "--run-id", run.info.run_id)
    assert code == 0, text
    assert f"reproducing trial {number}" in text


@pytest.mark.parametrize("args, message", [
    (("--trial", "0"), "trial 0 failed: only a complete trial has final values"),
    (("--trial", "9"), "has no trial 9"),
    ((), "name the trial to reproduce"),
    (("--run-id", "0123456789abcdef"), "no MLflow run"),
])
def test_reproduce_says_what_cannot_be_reproduced(done, inside, args, message):
    code, text = inside("reproduce", "study.toml", *args)
    assert code == 2 and message in " ".join(text.split()), text
