"""The exported best model as an MLflow model: logged with its signature and input example,
registered under the spec's name, loaded back through mlflow.pyfunc, and scoring posts exactly as
`criteria predict` does."""

from __future__ import annotations

import csv

import optuna
import pytest
from criteria.engine.predict import predict_file
from criteria.plugin.registry import Registry
from criteria.spec.load import load_spec
from criteria.study.report import export_best
from criteria.study.runner import run_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore::UserWarning")

POSTS = [("p1", "I have not slept properly in weeks and I feel worthless."),
         ("p2", "Went hiking with friends today, great weekend!"),
         ("p3", "Food tastes like nothing, I skip meals and lost a lot of weight.")]


def test_the_exported_model_round_trips_through_mlflow(workdir, tiny_bert):
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    spec_file = workdir / "study.toml"
    spec_file.write_text(f"""
[study]
name = "tiny-mlflow"
trials = 1
register_model = "tiny-criteria"
[data]
max_length = 64
[model]
name = "{tiny_bert}"
[train]
epochs = 1
evidence_sentences = false  # whole posts only: the round trip, not the score, is under test
batch_size = 64
eval_batch_size = 256
[sampler]
use = "random"
[pruner]
use = "none"
[optimizer]
use = "adamw"
[peft]
use = "none"
""")
    spec = load_spec(spec_file, Registry.from_entry_points(allowed=[]))
    study, _, data, tracker = run_study(spec, output=workdir / "out")
    export = export_best(study, spec, data, workdir / "out", tracker)
    tracker.finish()

    logged = export.mlflow_model
    assert logged.uri == f"runs:/{tracker.parent_id}/model"
    assert logged.registered_uri == "models:/tiny-criteria/1"
    client = MlflowClient()
    assert client.get_registered_model("tiny-criteria").name == "tiny-criteria"

    info = mlflow.models.get_model_info(logged.registered_uri)
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["post_id", "text"]
    assert [c["name"] for c in info.signature.outputs.to_dict()] == [
        "post_id", "criterion_id", "criterion", "probability", "met"]
    assert info.saved_input_example_info is not None
    example = mlflow.models.Model.load(logged.uri).load_input_example(
        mlflow.artifacts.download_artifacts(logged.uri))
    assert list(example.columns) == ["post_id", "text"]
    assert not set(example["text"]) & set(data.corpus.posts.values())  # no corpus text logged

    model = mlflow.pyfunc.load_model(logged.registered_uri)
    scored = model.predict(pd.DataFrame(POSTS, columns=["post_id", "text"]))
    assert len(scored) == len(POSTS) * 9

    posts = workdir / "posts.csv"
    with posts.open("w", newline="") as handle:
        csv.writer(handle).writerows([("post_id", "text"), *POSTS])
    predict_file(export.folder, posts, workdir / "pred.csv", spec.registry)  # what `criteria predict` runs
    rows = list(csv.DictReader((workdir / "pred.csv").open()))
    assert [(r["post_id"], r["criterion_id"], r["criterion"], int(r["met"])) for r in rows] == [
        (r.post_id, r.criterion_id, r.criterion, int(r.met)) for r in scored.itertuples()]
    assert [float(r["probability"]) for r in rows] == pytest.approx(list(scored["probability"]), abs=1e-6)
