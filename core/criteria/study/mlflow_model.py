"""The exported best model as an MLflow model (the ``python_function`` flavour).

``mlflow.pyfunc.load_model``, ``mlflow models serve`` and the model registry then use it like any
other MLflow model. Input: a table with the columns ``post_id`` and ``text``, one row per post.
Output: one row per post and criterion with the columns of ``criteria predict``
(``post_id, criterion_id, criterion, probability, met``; ``met`` is the decision at the model's
tuned threshold). The model folder ``criteria predict`` reads is logged as the model's artifact, so
both score a post the same way (:func:`criteria.engine.predict.score_posts`).

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
from criteria.plugin.registry import Registry
from criteria.study.tracking import StudyTracker

__all__ = ["ARTIFACT_PATH", "CriteriaClassifierModel", "LoggedModel", "log_classifier_model", "model_signature"]

ARTIFACT_PATH = "model"  # the model's name under the study's parent run
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
        from criteria.engine.model import load_classifier
        from criteria.engine.predict import default_runtime

        # The model's head and PEFT plugins come from the installed plugin distributions.
        registry = Registry.from_entry_points()
        model, self.tokenizer, self.metadata = load_classifier(Path(context.artifacts["model"]), registry)
        self.runtime = default_runtime(registry)
        self.model = self.runtime.prepare(model)

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from criteria.engine.predict import score_posts

        frame = pd.DataFrame(model_input)
        missing = {"post_id", "text"} - set(frame.columns)
        if missing:
            raise ValueError(f"the input needs the columns post_id and text; missing {', '.join(sorted(missing))}")
        posts = {str(post_id): " ".join(str(text).split()) for post_id, text in zip(frame["post_id"], frame["text"])}
        rows = score_posts(self.model, self.tokenizer, self.metadata, posts, self.runtime,
                           batch_size=int((params or {}).get("batch_size", 64)), source="MLflow input")
        return pd.DataFrame([[getattr(row, column) for column in PREDICTION_COLUMNS] for row in rows],
                            columns=list(PREDICTION_COLUMNS))


def model_signature() -> Any:
    """Input ``post_id, text``; output ``post_id, criterion_id, criterion, probability, met``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "post_id"), ColSpec("string", "text")]),
        outputs=Schema([ColSpec("string", "post_id"), ColSpec("string", "criterion_id"),
                        ColSpec("string", "criterion"), ColSpec("double", "probability"), ColSpec("long", "met")]),
        params=ParamSchema([ParamSpec("batch_size", "long", 64)]),
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
                         register_as: str | None = None) -> LoggedModel:
    """Log ``model_folder`` (a folder ``criteria predict`` loads) as an MLflow model under the
    study's parent run; registered as ``register_as`` when given. ``registry`` is the study's (the
    model's plugins' distributions become requirements)."""
    import logging

    import pandas as pd

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    # It warns that a Python object is pickled; this one is pickled by reference to its module.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(tracker.uri)
    with mlflow.start_run(run_id=tracker.parent_id):
        info = mlflow.pyfunc.log_model(
            name=ARTIFACT_PATH,
            python_model=CriteriaClassifierModel(),
            artifacts={"model": str(model_folder)},
            signature=model_signature(),
            input_example=pd.DataFrame(_INPUT_EXAMPLE),
            pip_requirements=_requirements(model_folder, registry),
            registered_model_name=register_as,
        )
    uri = f"runs:/{tracker.parent_id}/{ARTIFACT_PATH}"
    version = getattr(info, "registered_model_version", None)
    return LoggedModel(uri, register_as, str(version) if version is not None else None)


def _requirements(model_folder: Path, registry: Registry) -> list[str]:
    """criteria itself, the distributions of the plugins the model folder names (its head, and its
    PEFT method when the folder re-applies it), and the libraries it runs on, as installed here."""
    from importlib import metadata as importlib_metadata

    saved = json.loads((model_folder / MODEL_FILE).read_text())
    requirements = {"criteria": __version__}
    for kind in ("head", "peft"):
        if saved.get(kind):
            info = registry.get(kind, saved[kind]["name"])
            requirements[info.distribution] = info.version
    for package in ("torch", "transformers", "peft"):
        # a local build tag (torch's +cpu) names no release on an index
        requirements[package] = importlib_metadata.version(package).split("+")[0]
    return [f"{name}=={version}" for name, version in requirements.items()]
