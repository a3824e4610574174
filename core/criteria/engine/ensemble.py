"""An ensemble of saved classifiers, scoring posts as one model.

Each member scores the posts with its own formulation, tokenization and weights; the ensemble's
probability for a (post, criterion) is the mean of the members' probabilities, judged at the
ensemble's own decision thresholds (tuned on validation when it was built:
:mod:`criteria.study.ensemble`). With evidence, a sentence's probability is the mean over the
members that have evidence binding.

An ensemble's folder is a model folder like any other (``criteria predict`` loads it)::

    model/
      criteria_model.json     {"format": 1, "ensemble": {"members": [...], "trials": [...]}, "threshold": ..., ...}
      members/trial-<n>/      one model folder per member
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from criteria.data.corpus import Criterion
from criteria.engine.model import MODEL_FILE, ModelError, load_classifier
from criteria.engine.predict import ModelScorer, ScoredPairs, model_criteria
from criteria.engine.runtime import Runtime
from criteria.errors import CriteriaError
from criteria.files import write_json
from criteria.plugin.registry import Registry

__all__ = ["MEMBERS_FOLDER", "EnsembleScorer", "average_probabilities", "average_sentence_probabilities",
           "write_ensemble_metadata"]

MEMBERS_FOLDER = "members"


def average_probabilities(members: Sequence[np.ndarray]) -> np.ndarray:
    """The members' probabilities of the same pairs, averaged."""
    return np.mean(np.stack([np.asarray(m, dtype=np.float64) for m in members]), axis=0)


def average_sentence_probabilities(members: Sequence[dict[int, np.ndarray]]) -> dict[int, np.ndarray]:
    """Per pair, the mean sentence probabilities over the members that scored its sentences; a
    sentence no member read stays NaN."""
    out: dict[int, np.ndarray] = {}
    for pair in sorted({p for m in members for p in m}):
        rows = np.stack([m[pair] for m in members if pair in m])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no member read the sentence
            out[pair] = np.nanmean(rows, axis=0)
    return out


def write_ensemble_metadata(folder: Path, members: Sequence[str], trials: Sequence[int], threshold: Any,
                            criteria: Sequence[dict[str, str]], **extra: Any) -> Path:
    """``folder/criteria_model.json`` of an ensemble whose member folders are ``members`` (paths
    relative to ``folder``)."""
    return write_json(folder / MODEL_FILE, {
        "format": 1, "ensemble": {"members": list(members), "trials": list(trials), "combine": "mean"},
        "threshold": threshold, "criteria": list(criteria), **extra,
    }, "ensemble description")


class EnsembleScorer:
    """Members' :class:`~criteria.engine.predict.ModelScorer` combined by averaging."""

    def __init__(self, members: Sequence[ModelScorer], metadata: dict[str, Any]) -> None:
        self.members, self.metadata = list(members), metadata

    @classmethod
    def load(cls, folder: Path, registry: Registry, **options: Any) -> EnsembleScorer:
        metadata = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
        members = []
        for relative in metadata["ensemble"]["members"]:
            member = folder / relative
            if not (member / MODEL_FILE).is_file():
                raise ModelError(f"{folder} is an ensemble whose member {relative} is missing; export the ensemble "
                                 "again (criteria run on the study)")
            members.append(ModelScorer(*load_classifier(member, registry, **options)))
        own = [c.id for c in model_criteria(metadata)]
        for relative, member in zip(metadata["ensemble"]["members"], members):
            if [c.id for c in member.criteria] != own:
                raise ModelError(f"member {relative} of the ensemble in {folder} scores other criteria than the "
                                 "ensemble; export the ensemble again")
        return cls(members, metadata)

    @property
    def has_evidence(self) -> bool:
        return any(member.has_evidence for member in self.members)

    @property
    def criteria(self) -> tuple[Criterion, ...]:
        return model_criteria(self.metadata)

    def prepare(self, runtime: Runtime) -> EnsembleScorer:
        for member in self.members:
            member.prepare(runtime)
        return self

    def score(self, posts: dict[str, str], runtime: Runtime, *, batch_size: int = 64, source: str = "posts",
              criteria: Sequence[Criterion] | None = None, evidence: bool = False) -> ScoredPairs:
        """Every post against the ensemble's criteria: the members' mean probability."""
        if criteria is not None:
            raise CriteriaError("an ensemble scores the criteria its members were trained on; drop --criteria")
        scored = [member.score(posts, runtime, batch_size=batch_size, source=source,
                               evidence=evidence and member.has_evidence) for member in self.members]
        with_evidence = [s for s in scored if s.evidence]
        return ScoredPairs(
            scored[0].corpus, average_probabilities([s.probs for s in scored]), self.metadata["threshold"],
            with_evidence[0].sentences if with_evidence else None,
            average_sentence_probabilities([s.evidence for s in with_evidence]) if with_evidence else {},
        )
