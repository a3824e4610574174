"""What ``criteria validate`` checks beyond the schema: the spec's data files load (every row,
header, label and criterion) and its model can be found, without loading a model or importing
torch, so a bad input is caught in about a second rather than after a run's start-up."""

from __future__ import annotations

from dataclasses import dataclass

from criteria.data.sources import load_corpus
from criteria.data.texts import load_texts
from criteria.engine.model_source import resolve_model
from criteria.spec.load import Spec

__all__ = ["InputsReport", "check_inputs"]


@dataclass(frozen=True)
class InputsReport:
    data: str  # the corpus in one line: posts, criteria, pairs, positives
    model: str
    pretraining: str = ""  # the [pretrain] corpus in one line, when the spec names one


def check_inputs(spec: Spec) -> InputsReport:
    """Load the spec's corpus (and its pretraining corpus) and resolve its model; raises the data
    or model error it meets."""
    corpus = load_corpus(spec.data, spec.path.parent)
    pretraining = ""
    stage = spec.space.pretrain
    if stage is not None and stage.fixed.get("corpus") is not None:
        path = stage.fixed["corpus"]
        texts = load_texts(path, stage.fixed.get("text_column", "text"))
        pretraining = f"{path}: {len(texts)} texts, {sum(len(t.split()) for t in texts)} words"
    return InputsReport(corpus.summary(), resolve_model(spec.model.name).description, pretraining)
