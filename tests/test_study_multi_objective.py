"""Studies with several objectives (``[study] metric = [...]``) on tiny models: value tuples, the
Pareto front in the summary, MLflow and the export; and the spec errors that refuse what Optuna
cannot do with several objectives."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import HANG_GUARD_SECONDS
from criteria.errors import CriteriaError
from criteria.plugin.registry import get_registry
from criteria.spec.errors import SpecError
from criteria.spec.load import load_spec
from criteria.study.report import export_best
from criteria.study.runner import run_study
from criteria.study.storage import load_study
from recording import EpochRecorder

optuna.logging.set_verbosity(optuna.logging.WARNING)

TWO_METRICS = 'metric = ["macro_f1", "loss"]\ndirection = ["maximize", "minimize"]'


def write_spec(folder: Path, model: Path | str, trials: int = 3, study: str = TWO_METRICS,
               sampler: str = '"nsga2"\n[sampler.nsga2]\npopulation_size = 2', pruner: str | None = '"none"',
               epochs: int = 2) -> Path:
    """Like tests/test_study.py's tiny study, with several metrics and NSGA-II (two trials per
    generation, so a three-trial study breeds a child)."""
    spec = folder / "study.toml"
    pruner_section = f"[pruner]\nuse = {pruner}\n" if pruner else ""
    spec.write_text(f"""
[study]
name = "tiny-pareto"
trials = {trials}
seed = 7
{study}
[data]
max_length = 64
[model]
name = "{model}"
[train]
epochs = {epochs}
batch_size = 64
eval_batch_size = 256
patience = 0
[sampler]
use = {sampler}
{pruner_section}[optimizer]
use = ["adamw", "sgd"]
[optimizer.adamw]
lr = {{low = 1e-4, high = 1e-3}}
[peft]
use = "none"
[loss]
use = ["cross_entropy", "focal"]
""")
    return spec


def test_two_metric_nsga2_study_returns_value_tuples_and_exports_the_fronts_best(workdir, tiny_bert):
    from mlflow.tracking import MlflowClient

    spec = load_spec(write_spec(workdir, tiny_bert), get_registry())
    assert spec.study.metrics == ("macro_f1", "loss") and spec.study.metric == "macro_f1"
    epochs: dict[int, list] = {}
    study, summary, data, tracker = run_study(
        spec, output=workdir / "out",
        progress=EpochRecorder(lambda n, e: epochs.setdefault(n, []).append(e.metrics["overall"])))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert summary.counts["complete"] == 3 and len(study.trials) == 3
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    assert max(t.system_attrs["NSGAIISampler:generation"] for t in study.trials) == 1  # a child was bred
    for trial in study.trials:
        # each metric reduced over epochs on its own ("best": max F1, min loss), then over the one fold
        overall = epochs[trial.number]
        assert trial.values == pytest.approx([max(o["macro_f1"] for o in overall), min(o["loss"] for o in overall)])
        assert trial.user_attrs["fold_values"] == [pytest.approx(trial.values)]
        assert not trial.intermediate_values  # nothing reported: Optuna cannot prune several objectives

    front = {t.number for t in study.best_trials}
    assert {t.number for t in summary.front} == front and summary.best_value is None
    exported = max(study.best_trials, key=lambda t: (t.values[0], -t.number))
    assert summary.best_trial == exported.number == summary.front[0].number
    assert summary.best_params == exported.params
    from criteria.study.folders import KEPT_FOLDER, kept_model_folder

    kept_folder = kept_model_folder(workdir / "out" / KEPT_FOLDER, exported.number)  # the study kept its model
    kept = json.loads((kept_folder / "model" / "criteria_model.json").read_text())
    assert kept["trial"] == exported.number and kept["value"] == pytest.approx(dict(zip(spec.study.metrics, exported.values)))

    export = export_best(study, spec, data, workdir / "out", tracker)
    tracker.finish()
    assert export.test is not None and export.baseline_test is not None
    assert "pareto_front.png" in {p.name for p in export.plots}
    metrics = json.loads((export.folder / "metrics.json").read_text())
    assert metrics["best_trial"] == exported.number and set(metrics["pareto_front"]) == front
    assert metrics["best_values"] == pytest.approx({"macro_f1": exported.values[0], "loss": exported.values[1]})

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny-pareto").experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = {int(r.data.tags["criteria.trial"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    for trial in study.trials:
        logged = children[trial.number].data.metrics
        assert [logged["objective_macro_f1"], logged["objective_loss"]] == pytest.approx(trial.values)
    assert parent.data.tags["criteria.pareto_front"].split(", ") == [str(t.number) for t in summary.front]
    assert parent.data.tags["criteria.objectives"] == "macro_f1 (maximize), loss (minimize)"
    assert client.list_artifacts(parent.info.run_id, "plots")


def test_run_prints_the_pareto_front_and_its_export_predicts(workdir, tiny_bert, cli):
    spec = write_spec(workdir, tiny_bert, trials=2, study='metric = ["macro_f1", "roc_auc"]',
                      sampler='"tpe"', pruner=None, epochs=1)  # both maximized by default; the default pruner never prunes
    # the whole study in one command: more than the cli fixture's two minutes on a busy machine
    result = subprocess.run([sys.executable, "-m", "criteria.cli", "run", str(spec), "--no-track"], cwd=workdir,
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=HANG_GUARD_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "2 complete, 0 pruned, 0 failed" in out and "Pareto front" in out
    assert "macro_f1 ↑" in out and "roc_auc ↑" in out and "* exported" in out
    assert "TF-IDF + logistic regression" in out
    status = cli("study", "status", str(spec), cwd=workdir)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "2 complete" in status.stdout and "Pareto front" in status.stdout and "macro_f1 ↑" in status.stdout

    study = load_study(load_spec(spec, get_registry()), create=False)
    assert study.user_attrs["criteria.metrics"] == ["macro_f1", "roc_auc"]
    best = workdir / "outputs" / "tiny-pareto" / "best-model"
    exported = max(study.best_trials, key=lambda t: (t.values[0], -t.number))
    assert json.loads((best / "model" / "criteria_model.json").read_text())["trial"] == exported.number
    posts = workdir / "posts.csv"
    posts.write_text("post_id,text\np1,I cannot get out of bed and nothing feels worth it.\n")
    predicted = cli("predict", str(best), "--input", str(posts), "--output", str(workdir / "p.csv"), cwd=workdir)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert len(list(csv.DictReader((workdir / "p.csv").open()))) == 9


# --- what the spec refuses (no training) -------------------------------------------------------


def _problems(path: Path) -> str:
    with pytest.raises(SpecError) as raised:
        load_spec(path, get_registry())
    return str(raised.value)


def test_several_metrics_with_a_pruner_are_refused_naming_both_keys(tmp_path):
    message = _problems(write_spec(tmp_path, "unused", pruner='"median"'))
    assert "pruner.use: pruner 'median' cannot serve a multi-objective study" in message
    assert "study.metric names 2 metrics (macro_f1, loss)" in message
    assert 'use = "none"' in message and 'study.metric = "macro_f1"' in message


def test_without_a_pruner_section_several_metrics_default_to_one_that_never_prunes(tmp_path):
    assert load_spec(write_spec(tmp_path, "unused", pruner=None), get_registry()).pruner.name == "none"
    single = load_spec(write_spec(tmp_path, "unused", study='metric = "macro_f1"', pruner=None), get_registry())
    assert single.pruner.name == "median" and not single.study.multi_objective  # as before


def test_directions_must_match_the_metrics(tmp_path):
    message = _problems(write_spec(tmp_path, "unused", study='metric = ["macro_f1", "loss", "roc_auc"]\n'
                                                            'direction = ["maximize", "minimize"]'))
    assert "study.direction: " in message and "2 direction(s) for 3 metric(s)" in message
    # one direction applies to every metric
    spec = load_spec(write_spec(tmp_path, "unused", study='metric = ["f1", "mcc"]\ndirection = "maximize"'), get_registry())
    assert spec.study.directions == ("maximize", "maximize")


def test_a_metric_named_twice_is_refused(tmp_path):
    message = _problems(write_spec(tmp_path, "unused", study='metric = ["f1", "f1"]'))
    assert "study.metric: " in message and "f1 listed more than once" in message


def test_a_sampler_without_multi_objective_support_is_refused(tmp_path):
    from criteria.plugin.registry import get_registry

    if not get_registry().get("sampler", "cmaes").availability():
        pytest.skip("cmaes is not installed")
    message = _problems(write_spec(tmp_path, "unused", sampler='"cmaes"'))
    assert "sampler.use: sampler 'cmaes' cannot serve a multi-objective study" in message
    assert "it optimises a single objective" in message and "nsga2" in message
    assert "CMA-ES cannot sample categorical" not in message  # the objectives are the first thing to fix


def test_a_single_metric_spec_is_read_as_before(tmp_path):
    spec = load_spec(write_spec(tmp_path, "unused", study='metric = "loss"\ndirection = "minimize"', sampler='"tpe"',
                                pruner='"median"'), get_registry())
    assert (spec.study.metric, spec.study.direction, spec.study.metrics) == ("loss", "minimize", ("loss",))
    dumped = spec.study.model_dump()
    assert dumped["metric"] == "loss" and dumped["direction"] == "minimize"


def test_a_stored_study_resumes_only_with_the_same_objectives(workdir):
    first = load_spec(write_spec(workdir, "unused"), get_registry())
    load_study(first)  # creates it; no trial runs
    changed = load_spec(write_spec(workdir, "unused", study='metric = ["macro_f1", "roc_auc"]'), get_registry())
    with pytest.raises(CriteriaError) as raised:
        load_study(changed)
    assert "optimises macro_f1 (maximize), loss (minimize), but the spec asks for macro_f1 (maximize), " \
           "roc_auc (maximize)" in str(raised.value)
    single = load_spec(write_spec(workdir, "unused", study='metric = "macro_f1"', pruner='"median"'), get_registry())
    with pytest.raises(CriteriaError):
        load_study(single, create=False)
