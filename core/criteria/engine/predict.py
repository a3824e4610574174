"""Scoring posts against every criterion with a saved model folder: ``criteria predict`` and the
MLflow model share :func:`load_scorer` and :func:`predictions`.

A model folder holds one classifier or an ensemble of them (:mod:`criteria.engine.ensemble`);
either is loaded by :func:`load_scorer` and scores posts the same way. With evidence, each met
pair also gets the sentences of its post most likely to show the criterion, with their
probabilities (evidence binding, :mod:`criteria.engine.evidence`): the posts are cut into
sentences by the rule of :mod:`criteria.data.sentences`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from criteria.data.corpus import Corpus, Criterion, Pair
from criteria.data.loaders import load_criteria_json, load_posts
from criteria.data.sentences import SentenceIndex, locate_evidence
from criteria.data.tokens import encode_texts, encode_units
from criteria.data.units import pair_units
from criteria.engine.evidence import EvidenceTask
from criteria.engine.evidence_metrics import ranking
from criteria.engine.inference import predict_probs
from criteria.engine.model import MODEL_FILE, ModelError, criteria_tensors, load_classifier
from criteria.engine.runtime import Runtime
from criteria.engine.thresholds import Threshold, thresholds_of
from criteria.errors import CriteriaError
from criteria.files import atomic_output, check_output_file
from criteria.plugin.registry import Registry

__all__ = [
    "EVIDENCE_COLUMN", "PREDICTION_COLUMNS", "ModelScorer", "Prediction", "ScoredPairs", "default_runtime",
    "load_scorer", "model_folder", "predict_file", "predictions", "score_posts",
]

#: How many sentences ``--evidence`` shows per met pair unless told otherwise.
EVIDENCE_TOP = 3


def default_runtime(registry: Registry) -> Runtime:
    """The best backend available here (highest priority), with its defaults."""
    backends = [info for info in registry.plugins("backend").values() if info.availability()]
    best = max(backends, key=lambda info: info.cls.priority)
    return best.cls().build()


@dataclass(frozen=True)
class Prediction:
    """One post scored against one criterion; ``evidence`` (when asked, for a met pair) holds the
    post's most likely evidence sentences with their probabilities, most likely first."""

    post_id: str
    criterion_id: str
    criterion: str
    probability: float
    met: int
    evidence: tuple[tuple[str, float], ...] = ()


#: The columns of a prediction table, in order (``criteria predict``'s CSV, the MLflow model's output).
PREDICTION_COLUMNS = tuple(f.name for f in fields(Prediction) if f.name != "evidence")
#: The column ``--evidence`` adds: a JSON list of ``{"sentence": ..., "probability": ...}``.
EVIDENCE_COLUMN = "evidence"


@dataclass
class ScoredPairs:
    """Every (post, criterion) pair of some posts with its probability, the decision threshold
    (one, or one per criterion id) and, when asked, each pair's sentence probabilities."""

    corpus: Corpus
    probs: np.ndarray
    threshold: Threshold
    sentences: SentenceIndex | None = None
    evidence: dict[int, np.ndarray] = field(default_factory=dict)


def model_criteria(metadata: Mapping[str, Any]) -> tuple[Criterion, ...]:
    return tuple(Criterion(**c) for c in metadata["criteria"])


class ModelScorer:
    """One saved classifier (``load_classifier``'s model, tokenizer and metadata) scoring posts."""

    def __init__(self, model: Any, tokenizer: Any, metadata: dict[str, Any]) -> None:
        self.model, self.tokenizer, self.metadata = model, tokenizer, metadata

    @property
    def has_evidence(self) -> bool:
        return getattr(self.model, "evidence", None) is not None

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        return model_criteria(self.metadata)

    def prepare(self, runtime: Runtime) -> ModelScorer:
        self.model = runtime.prepare(self.model)
        return self

    def score(self, posts: dict[str, str], runtime: Runtime, *, batch_size: int = 64, source: str = "posts",
              criteria: Sequence[Criterion] | None = None, evidence: bool = False) -> ScoredPairs:
        """Every post in ``posts`` (post_id -> text) against every criterion the model was trained
        on, or against ``criteria`` where the model's formulation reads criterion texts (a
        bi-encoder; they are judged at one threshold, the median of the model's own)."""
        model, tokenizer, metadata = self.model, self.tokenizer, self.metadata
        own = self.criteria
        threshold = metadata.get("threshold", 0.5)
        if criteria is not None:
            formulation = model.formulation
            if formulation is None or not formulation.scores_new_criteria:
                name = formulation.name if formulation is not None else "pair"
                raise CriteriaError(
                    f"this model ({name} formulation) scores only the criteria it was trained on "
                    f"({', '.join(c.id for c in own)}); drop --criteria, or train a formulation that reads "
                    "criterion texts (biencoder)")
            model.set_criteria(criteria_tensors(encode_texts(tokenizer, [c.text for c in criteria],
                                                             metadata["max_length"]), tokenizer.pad_token_id or 0))
            threshold = float(np.median(list(threshold.values()))) if isinstance(threshold, dict) else float(threshold)
        chosen = tuple(criteria) if criteria is not None else own
        pairs = tuple(Pair(post_id, c.id, 0) for post_id in posts for c in chosen)
        corpus = Corpus(posts, chosen, pairs, source=source)
        units = model.formulation.units(corpus) if model.formulation is not None else pair_units(corpus)
        encoded = encode_units(tokenizer, units, metadata["max_length"], use_cache=False, corpus=corpus)
        sentences = collector = None
        if evidence and self.has_evidence:
            sentences = locate_evidence(corpus)  # no annotations here: the rule alone cuts the posts
            task = EvidenceTask.build(tokenizer, encoded, corpus, sentences, metadata["max_length"])
            collector = task.collector(range(len(pairs)))
        probs, _ = predict_probs(model, runtime, encoded, np.arange(len(pairs)), None, tokenizer.pad_token_id or 0,
                                 batch_size, evidence=collector)
        return ScoredPairs(corpus, probs, threshold, sentences, collector.probs if collector is not None else {})


def predictions(scored: ScoredPairs, evidence_top: int = 0) -> list[Prediction]:
    """One :class:`Prediction` per pair; with ``evidence_top``, a met pair also gets that many of
    its post's sentences, most likely evidence first (sentences the model did not read, past
    ``max_length``, are never shown)."""
    corpus = scored.corpus
    each = thresholds_of(scored.threshold, [pair.criterion_id for pair in corpus.pairs])
    names = {c.id: c.name for c in corpus.criteria}
    out = []
    for row, (pair, p) in enumerate(zip(corpus.pairs, scored.probs)):
        met = int(p >= (each[row] if isinstance(each, np.ndarray) else each))
        shown: tuple[tuple[str, float], ...] = ()
        if met and evidence_top and row in scored.evidence and scored.sentences is not None:
            probs = scored.evidence[row]
            texts = scored.sentences.sentences(pair.post_id, corpus.posts[pair.post_id])
            shown = tuple((texts[s], float(probs[s])) for s in ranking(probs)[:evidence_top]
                          if not np.isnan(probs[s]))
        out.append(Prediction(pair.post_id, pair.criterion_id, names[pair.criterion_id], float(p), met, shown))
    return out


def score_posts(model: Any, tokenizer: Any, metadata: dict[str, Any], posts: dict[str, str], runtime: Runtime, *,
                batch_size: int = 64, source: str = "posts", criteria: Sequence[Criterion] | None = None,
                evidence_top: int = 0) -> list[Prediction]:
    """:class:`ModelScorer` and :func:`predictions` in one call, for one loaded classifier."""
    scored = ModelScorer(model, tokenizer, metadata).score(posts, runtime, batch_size=batch_size, source=source,
                                                           criteria=criteria, evidence=bool(evidence_top))
    return predictions(scored, evidence_top)


def model_folder(run_dir: Path) -> Path:
    """The model folder of a run folder (``run/model``), or ``run_dir`` itself when it is one."""
    return run_dir / "model" if (run_dir / "model").is_dir() else run_dir


def load_scorer(folder: Path, registry: Registry, **options: Any) -> Any:
    """The model in a model folder, ready to score posts: a :class:`ModelScorer`, or an
    :class:`~criteria.engine.ensemble.EnsembleScorer` for an ensemble's folder. ``options`` go to
    :func:`~criteria.engine.model.load_classifier` (``base_location``)."""
    folder = model_folder(folder)
    metadata_file = folder / MODEL_FILE
    if metadata_file.is_file():
        try:
            kind = json.loads(metadata_file.read_text(encoding="utf-8")).get("ensemble")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"{metadata_file} is damaged ({exc}); export or train the model again") from None
        if kind:
            from criteria.engine.ensemble import EnsembleScorer

            return EnsembleScorer.load(folder, registry, **options)
    return ModelScorer(*load_classifier(folder, registry, **options))


def predict_file(model_dir: Path, input_csv: Path, output_csv: Path, registry: Registry, *,
                 batch_size: int = 64, criteria_json: Path | None = None, evidence_top: int = 0) -> int:
    """Write ``post_id,criterion_id,criterion,probability,met`` for every post x criterion (and
    ``evidence`` with ``evidence_top``); returns rows. ``criteria_json`` scores other criteria
    than the model was trained on, where its formulation can (see :meth:`ModelScorer.score`)."""
    check_output_file(output_csv, "predictions file")  # before the model loads: fail fast
    posts = load_posts(input_csv, what="input file")
    other = load_criteria_json(criteria_json) if criteria_json is not None else None
    scorer = load_scorer(model_dir, registry)
    if evidence_top and not scorer.has_evidence:
        raise CriteriaError(f"{model_dir} was trained without evidence binding, so it cannot point at evidence "
                            "sentences; drop --evidence, or train with [train] evidence_loss_weight > 0 on data "
                            "with sentence annotations")
    runtime = default_runtime(registry)
    scored = scorer.prepare(runtime).score(posts, runtime, batch_size=batch_size, source=str(input_csv),
                                           criteria=other, evidence=bool(evidence_top))
    rows = predictions(scored, evidence_top)
    with atomic_output(output_csv, "predictions file", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS + ((EVIDENCE_COLUMN,) if evidence_top else ()))
        for row in rows:
            cells = [row.post_id, row.criterion_id, row.criterion, f"{row.probability:.6f}", row.met]
            if evidence_top:
                cells.append(evidence_cell(row))
            writer.writerow(cells)
    return len(rows)


def evidence_cell(row: Prediction) -> str:
    """The evidence of a met pair as compact JSON (empty for a pair not met)."""
    if not row.met:
        return ""
    return json.dumps([{"sentence": text, "probability": round(p, 4)} for text, p in row.evidence],
                      ensure_ascii=False)
