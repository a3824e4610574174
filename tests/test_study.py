"""The study runner on tiny models: tracking, pruning, failures, interruption and resume, export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
from criteria import PrunerPlugin, hookimpl
from criteria.errors import CriteriaError
from criteria.plugin.registry import Registry, get_registry
from criteria.spec.load import load_spec
from criteria.study.report import export_best
from criteria.study.runner import run_study
from criteria.study.storage import load_study
from criteria.study.tracking import redact
from recording import EpochRecorder
from tiny_models import NanLoss

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write_spec(folder: Path, model: Path, trials: int = 3, extra: str = "") -> Path:
    spec = folder / "study.toml"
    spec.write_text(f"""
[study]
name = "tiny-study"
trials = {trials}
seed = 7
[data]
max_length = 64
[model]
name = "{model}"
[train]
epochs = 2
batch_size = 64
eval_batch_size = 256
patience = 0
[sampler]
use = "random"
[pruner]
use = "none"
[optimizer]
use = ["adamw", "sgd"]
[optimizer.adamw]
lr = {{low = 1e-4, high = 1e-3}}
[peft]
use = "none"
[loss]
use = ["cross_entropy", "focal"]
{extra}
""")
    return spec


def test_study_tracks_trials_in_mlflow_and_exports_a_model_that_predicts(workdir, tiny_bert):
    from mlflow.tracking import MlflowClient

    spec = load_spec(write_spec(workdir, tiny_bert), get_registry())
    study, summary, data, tracker = run_study(spec, output=workdir / "out")
    assert summary.counts["complete"] == 3 and summary.best_value is not None
    kept = workdir / "out" / "kept" / f"trial-{summary.best_trial}" / "model" / "criteria_model.json"
    assert json.loads(kept.read_text())["trial"] == summary.best_trial  # the best trial's own model, kept as it ran
    assert summary.export_here and summary.complete  # the one worker finished the study: it exports
    export = export_best(study, spec, data, workdir / "out", tracker)
    tracker.finish()
    assert (export.folder / "model" / "criteria_model.json").is_file()
    assert {p.name for p in export.plots} >= {"optimization_history.png"}
    assert export.test is not None and export.baseline_test is not None

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny-study")
    runs = client.search_runs([experiment.experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert len(parent) == 1 and len(children) == 3
    child = children[0]
    assert child.data.params["optimizer"] in {"adamw", "sgd"} and "train.batch_size" in child.data.params
    assert child.data.tags["criteria.state"] == "complete" and len(child.data.tags["criteria.data_sha256"]) == 64
    history = client.get_metric_history(child.info.run_id, "val_macro_f1")
    assert [m.step for m in history] == [1, 2]
    tags = parent[0].data.tags
    assert {"criteria.git_commit", "criteria.hardware", "criteria.version", "criteria.data_sha256"} <= set(tags)
    artifacts = {a.path for a in client.list_artifacts(parent[0].info.run_id, "best")}
    assert {"best/confusion_matrix.png", "best/classification_report.json", "best/spec.resolved.json"} <= artifacts
    assert client.list_artifacts(parent[0].info.run_id, "plots")
    # post text never reaches MLflow
    logged = " ".join(map(str, [*child.data.params.values(), *child.data.tags.values(), *tags.values()]))
    assert data.corpus.text(data.corpus.pairs[0])[:40] not in logged


class AlwaysPrune(PrunerPlugin):
    name = "always"
    summary = "Prunes at the first report."

    def build(self, registry=None):
        return optuna.pruners.ThresholdPruner(lower=2.0)  # every metric is below 2


def registry_with_test_plugins() -> Registry:
    import types

    @hookimpl
    def register_pruners(register):
        register(AlwaysPrune)

    @hookimpl
    def register_losses(register):
        register(NanLoss)

    registry = Registry.from_entry_points(allowed=[])
    module = types.ModuleType("test_plugins")
    module.register_pruners, module.register_losses = register_pruners, register_losses
    registry.add_module(module, distribution="tests", version="0")
    return registry


def test_pruned_trials_really_stop_early(workdir, tiny_bert):
    spec_file = write_spec(workdir, tiny_bert, trials=2)
    spec_file.write_text(spec_file.read_text().replace('use = "none"\n[optimizer]', 'use = "always"\n[optimizer]')
                         .replace("epochs = 2", "epochs = 4"))
    spec = load_spec(spec_file, registry_with_test_plugins())
    epochs_seen = []
    study, summary, _, _ = run_study(spec, track=False, progress=EpochRecorder(lambda n, e: epochs_seen.append((n, e.epoch))))
    assert summary.counts["pruned"] == 2
    assert epochs_seen == [(0, 1), (1, 1)]  # each stopped after its first of four epochs
    assert all(len(t.intermediate_values) == 1 for t in study.trials)


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(workdir, tiny_bert):
    spec_file = write_spec(workdir, tiny_bert, trials=4)
    spec_file.write_text(spec_file.read_text().replace('use = ["cross_entropy", "focal"]', 'use = ["cross_entropy", "nan"]'))
    spec = load_spec(spec_file, registry_with_test_plugins())
    study, summary, _, _ = run_study(spec, track=False)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.FAIL in states and optuna.trial.TrialState.COMPLETE in states
    assert summary.counts["complete"] + summary.counts["fail"] == 4
    reasons = [r for _, r in summary.failures]
    assert reasons and all(r.startswith("diverged: the training loss became nan") for r in reasons)


def test_interrupted_study_resumes_without_losing_or_repeating_trials(workdir, tiny_bert):
    spec = load_spec(write_spec(workdir, tiny_bert, trials=3), get_registry())

    def interrupt(number, epoch):
        if number == 1 and epoch.epoch == 1:
            raise KeyboardInterrupt

    _, first, _, tracker = run_study(spec, progress=EpochRecorder(interrupt))
    assert first.interrupted and first.counts["complete"] == 1
    done_before = {t.number: t.params for t in load_study(spec, create=False).trials
                   if t.state == optuna.trial.TrialState.COMPLETE}

    study, second, _, _ = run_study(spec)
    complete = {t.number: t.params for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert len(complete) == 3 and not second.interrupted
    assert all(complete[n] == p for n, p in done_before.items())  # kept, not re-run
    interrupted = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(interrupted) == 1 and interrupted[0].user_attrs.get("interrupted")
    assert len(study.trials) == 4
    # a third run has nothing left to do
    _, third, _, _ = run_study(spec, track=False)
    assert len(load_study(spec, create=False).trials) == 4 and third.counts["complete"] == 3


def test_credentials_never_reach_messages_or_tags(workdir, tiny_bert):
    assert redact("postgresql://alice:hunter2@db.example:5432/optuna") == "postgresql://alice:***@db.example:5432/optuna"
    assert "tok123" not in redact("https://tok123@mlflow.example/api?token=tok123")
    assert redact("sqlite:////abs/path/studies.db") == "sqlite:////abs/path/studies.db"
    spec_file = write_spec(workdir, tiny_bert)
    spec_file.write_text(spec_file.read_text().replace('seed = 7', 'seed = 7\nstorage = "postgresql+psycopg2://alice:hunter2@127.0.0.1:1/optuna"'))
    spec = load_spec(spec_file, get_registry())
    with pytest.raises(CriteriaError) as info:
        run_study(spec, track=False)
    assert "hunter2" not in str(info.value) and "alice:***@" in str(info.value)


def test_run_command_end_to_end(workdir, tiny_bert, cli):
    spec = write_spec(workdir, tiny_bert, trials=2)
    result = cli("run", str(spec), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 complete, 0 pruned, 0 failed" in result.stdout and "TF-IDF + logistic regression" in result.stdout
    status = cli("study", "status", str(spec), cwd=workdir)
    assert status.returncode == 0 and "2 complete" in status.stdout
    posts = workdir / "posts.csv"
    posts.write_text("post_id,text\np1,I cannot get out of bed and nothing feels worth it.\n")
    best = workdir / "outputs" / "tiny-study" / "best-model"
    predicted = cli("predict", str(best), "--input", str(posts), "--output", str(workdir / "p.csv"), cwd=workdir)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert len(list(csv.DictReader((workdir / "p.csv").open()))) == 9


def test_refit_export_retrains_the_best_configuration(workdir, tiny_bert):
    spec_file = write_spec(workdir, tiny_bert, trials=1)
    spec_file.write_text(spec_file.read_text().replace("seed = 7", 'seed = 7\nexport = "refit"'))
    spec = load_spec(spec_file, get_registry())
    study, summary, data, _ = run_study(spec, track=False, output=workdir / "out")
    assert not (workdir / "out" / "kept").exists()  # refit: nothing kept during the study
    export = export_best(study, spec, data, workdir / "out", None)
    meta = json.loads((export.folder / "model" / "criteria_model.json").read_text())
    assert meta["trial"] == summary.best_trial and export.test["overall"]["support"] == len(data.test_indices)


def test_enqueued_configurations_run_first_and_only_once(tmp_path):
    import optuna
    from criteria.study.runner import enqueue_starting_points

    spec_file = tmp_path / "spec.toml"
    spec_file.write_text("""
[study]
name = "enqueue"
[[study.enqueue]]
optimizer = "lion"
"optimizer.lion.lr" = 1e-5
"optimizer.lion.betas" = [0.9, 0.99]
[optimizer]
use = ["adamw", "lion"]
[optimizer.lion]
betas = {choices = [[0.9, 0.99], [0.95, 0.98]]}
""")
    spec = load_spec(spec_file, get_registry())
    study = optuna.create_study(direction="maximize")
    enqueue_starting_points(study, spec)
    enqueue_starting_points(study, spec)  # a resumed study: not queued twice
    waiting = study.get_trials(deepcopy=False)
    assert len(waiting) == 1
    trial = study.ask()
    config = spec.space.suggest(trial)
    assert config.plugins["optimizer"].name == "lion"
    assert config.plugins["optimizer"].config.lr == 1e-5
    assert tuple(config.plugins["optimizer"].config.betas) == (0.9, 0.99)
