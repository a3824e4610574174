"""The exported best model as an MLflow model (the ``python_function`` flavour).

``mlflow.pyfunc.load_model``, ``mlflow models serve`` and the model registry then use it like any
other MLflow model. Input: a table with the columns ``post_id`` and ``text``, one row per post.
Output: one row per post and criterion with the columns of ``criteria predict``
(``post_id, criterion_id, criterion, probability, met``; ``met`` is the decision at the model's
tuned threshold), and with the parameter ``evidence_top`` > 0 the ``evidence`` column of
``criteria predict --evidence``. The model folder ``criteria predict`` reads (one classifier or an
ensemble) is logged as the model's artifact, so both score a post the same way
(:func:`criteria.engine.predict.load_scorer`). A folder that refers to a local base model
instead of copying it (:func:`criteria.engine.model.save_classifier`) carries that base model as a
second artifact; the embedded model and hub models are found where the model is loaded.

The input example is written here, never taken from the corpus: post text is not logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from criteria import __version__
from criteria.engine.model import MODEL_FILE
from criteria.engine.predict import PREDICTION_COLUMNS
from criteria.errors import CriteriaError
from criteria.plugin.registry import Registry
from criteria.study.tracking import StudyTracker

__all__ = ["ARTIFACT_PATH", "CriteriaClassifierModel", "LoggedModel", "log_classifier_model", "model_signature"]

ARTIFACT_PATH = "model"  # the model's name under the study's parent run
BASE_ARTIFACT = "base_model"  # a local base model that the model folder refers to
_INPUT_EXAMPLE = {
    "post_id": ["example-1", "example-2"],
    "text": ["I have barely slept for weeks and nothing I used to enjoy feels worth doing anymore.",
             "Went hiking with friends this weekend and cooked a big dinner afterwards."],
}


class CriteriaClassifierModel(mlflow.pyfunc.PythonModel):
    """Scores posts with a criteria model folder (``artifacts["model"]``)."""

    # No type hints on these two: MLflow reads predict's hints as a schema of their own; the
    # signature below is the schema.
    def load_context(self, context):
        from criteria.engine.predict import default_runtime, load_scorer

        # The model's head and PEFT plugins come from the installed plugin distributions.
        registry = Registry.from_entry_points()
        self.runtime = default_runtime(registry)
        self.scorer = load_scorer(Path(context.artifacts["model"]), registry,
                                  base_location=context.artifacts.get(BASE_ARTIFACT)).prepare(self.runtime)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from criteria.engine.predict import EVIDENCE_COLUMN, evidence_cell, predictions

        frame = pd.DataFrame(model_input)
        missing = {"post_id", "text"} - set(frame.columns)
        if missing:
            raise ValueError(f"the input needs the columns post_id and text; missing {', '.join(sorted(missing))}")
        posts = {str(post_id): " ".join(str(text).split()) for post_id, text in zip(frame["post_id"], frame["text"])}
        params = params or {}
        top = int(params.get("evidence_top", 0)) if self.scorer.has_evidence else 0
        scored = self.scorer.score(posts, self.runtime, batch_size=int(params.get("batch_size", 64)),
                                   source="MLflow input", evidence=bool(top))
        rows = predictions(scored, top)
        columns = list(PREDICTION_COLUMNS) + ([EVIDENCE_COLUMN] if top else [])
        return pd.DataFrame([[getattr(row, c) for c in PREDICTION_COLUMNS] + ([evidence_cell(row)] if top else [])
                             for row in rows], columns=columns)


def model_signature() -> Any:
    """Input ``post_id, text``; output ``post_id, criterion_id, criterion, probability, met``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "post_id"), ColSpec("string", "text")]),
        outputs=Schema([ColSpec("string", "post_id"), ColSpec("string", "criterion_id"),
                        ColSpec("string", "criterion"), ColSpec("double", "probability"), ColSpec("long", "met")]),
        params=ParamSchema([ParamSpec("batch_size", "long", 64), ParamSpec("evidence_top", "long", 0)]),
    )


@dataclass(frozen=True)
class LoggedModel:
    uri: str  # what mlflow.pyfunc.load_model takes (runs:/<parent run>/model)
    registered_name: str | None = None
    registered_version: str | None = None

    @property
    def registered_uri(self) -> str | None:
        return f"models:/{self.registered_name}/{self.registered_version}" if self.registered_name else None


def log_classifier_model(model_folder: Path, tracker: StudyTracker, registry: Registry, *,
                         register_as: str | None = None, name: str = ARTIFACT_PATH) -> LoggedModel:
    """Log ``model_folder`` (a folder ``criteria predict`` loads) as the MLflow model ``name``
    under the study's parent run; registered as ``register_as`` when given. ``registry`` is the
    study's (the model's plugins' distributions become requirements)."""
    import logging

    import pandas as pd

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # It warns that a Python object is pickled; this one is pickled by reference to its module.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(tracker.uri)
    artifacts = {"model": str(model_folder)}
    base = _local_base(model_folder)
    if base is not None:
        artifacts[BASE_ARTIFACT] = base
    with mlflow.start_run(run_id=tracker.parent_id):
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=CriteriaClassifierModel(),
            artifacts=artifacts,
            signature=model_signature(),
            input_example=pd.DataFrame(_INPUT_EXAMPLE),
            pip_requirements=_requirements(model_folder, registry),
            registered_model_name=register_as,
        )
    uri = f"runs:/{tracker.parent_id}/{name}"
    version = getattr(info, "registered_model_version", None)
    return LoggedModel(uri, register_as, str(version) if version is not None else None)


def _requirements(model_folder: Path, registry: Registry) -> list[str]:
    """criteria itself, the distributions of the plugins the model folder names (its head, and its
    PEFT method when the folder re-applies it), and the libraries it runs on, as installed here."""
    from importlib import metadata as importlib_metadata

    requirements = {"criteria": __version__}
    for saved in _descriptions(model_folder):
        for kind in ("head", "peft", "formulation"):
            if saved.get(kind):
                info = registry.get(kind, saved[kind]["name"])
                requirements[info.distribution] = info.version
    for package in ("torch", "transformers", "peft"):
        # a local build tag (torch's +cpu) names no release on an index
        requirements[package] = importlib_metadata.version(package).split("+")[0]
    return [f"{name}=={version}" for name, version in requirements.items()]


def _descriptions(model_folder: Path) -> list[dict[str, Any]]:
    """The ``criteria_model.json`` of a model folder, or of each member of an ensemble's."""
    saved = json.loads((model_folder / MODEL_FILE).read_text())
    if saved.get("ensemble"):
        return [json.loads((model_folder / member / MODEL_FILE).read_text()) for member in saved["ensemble"]["members"]]
    return [saved]


def _local_base(model_folder: Path) -> str | None:
    """The local base model folder the model (or its ensemble's members) refers to, if any: it
    travels with the MLflow model. The embedded model and hub names are found where it loads."""
    from criteria.engine.model_source import embedded_model_path

    embedded = str(embedded_model_path().resolve())
    bases = {d["base_model"]["location"] for d in _descriptions(model_folder)
             if d.get("base_model") and d["base_model"].get("name")}
    local = sorted(b for b in bases if Path(b).is_dir() and b != embedded)
    if len(local) > 1:
        raise CriteriaError(f"the ensemble in {model_folder} refers to several local base models ({', '.join(local)}); "
                            "an MLflow model carries one")
    return local[0] if local else None
