"""One training run from a spec: data, split, tokenization, engine, evaluation, run folder.

``criteria train SPEC`` calls :func:`train_from_spec`; the study runner reuses its pieces.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from criteria import __version__
from criteria.data import Corpus, EvidencePairs, holdout, load_corpus, test_split, with_evidence_pairs
from criteria.engine import FitResult, TrainingJob, check_trainable, fit, predict_probs
from criteria.metrics import evaluate
from criteria.model import load_tokenizer, save_classifier
from criteria.search_space import TrialConfig
from criteria.spec import Spec
from criteria.tokens import encode_pairs


@dataclass
class PreparedData:
    corpus: Corpus  # the data as loaded: splits, metrics and the baseline use it
    tokenizer: Any
    encoded: Any  # token ids of every pair of ``evidence.corpus`` (the corpus's pairs come first)
    study_indices: tuple[int, ...]  # everything but the held-out test posts
    test_indices: tuple[int, ...]
    evidence: EvidencePairs  # the corpus plus its evidence-sentence pairs, which only training sees


def prepare_data(spec: Spec) -> PreparedData:
    corpus = load_corpus(spec.data, spec.path.parent)
    tokenizer = load_tokenizer(spec.model.name)
    evidence = with_evidence_pairs(corpus, spec.data.evidence_negatives, spec.study.seed)
    encoded = encode_pairs(tokenizer, evidence.corpus, spec.data.max_length)
    rest, test = test_split(corpus, spec.data.test_fraction, spec.study.seed)
    return PreparedData(corpus, tokenizer, encoded, tuple(rest), tuple(test), evidence)


def make_job(spec: Spec, data: PreparedData, config: TrialConfig, train_idx, val_idx, **kwargs: Any) -> TrainingJob:
    train_idx = list(train_idx)
    if config.train.evidence_sentences:
        train_idx += data.evidence.for_posts(set(data.corpus.post_ids(train_idx)))
    job = TrainingJob(
        corpus=data.evidence.corpus, encoded=data.encoded, train_indices=train_idx, validation_indices=val_idx,
        config=config, model_name=spec.model.name, pad_token_id=data.tokenizer.pad_token_id or 0,
        mask_token_id=_mask_token_id(data.tokenizer), special_token_ids=tuple(data.tokenizer.all_special_ids),
        metric=spec.study.metric, direction=spec.study.direction, seed=spec.study.seed,
        tune_threshold=config.train.tune_threshold, **kwargs,
    )
    check_trainable(job)
    return job


def _mask_token_id(tokenizer: Any) -> int | None:
    """The token that token dropout writes: the mask token, else the unknown token."""
    for token_id in (tokenizer.mask_token_id, tokenizer.unk_token_id):
        if token_id is not None:
            return token_id
    return None


@dataclass
class RunResult:
    folder: Path
    fit: FitResult
    validation: dict[str, Any]
    test: dict[str, Any] | None
    baseline_test: dict[str, Any] | None
    seconds: float


def evaluate_indices(model: Any, data: PreparedData, config: TrialConfig, indices, threshold: float
                     ) -> tuple[dict, np.ndarray, list[int]]:
    """Metrics of ``model`` on the pairs at ``indices``, with the probabilities and labels behind them."""
    runtime = config.plugins["backend"].build()
    labels = data.corpus.labels
    idx = np.asarray(indices)
    probs, _ = predict_probs(model.to(runtime.device), runtime, data.encoded, idx, labels,
                             data.tokenizer.pad_token_id or 0, config.train.eval_batch_size)
    wanted = [labels[i] for i in idx]
    groups = [data.corpus.pairs[i].criterion_id for i in idx]
    return evaluate(wanted, probs, groups, threshold), probs, wanted


def baseline_metrics(corpus: Corpus, train_idx, eval_idx, seed: int) -> dict[str, Any]:
    from criteria.baseline import tfidf_baseline

    def columns(indices):
        pairs = [corpus.pairs[i] for i in indices]
        return [corpus.text(p) for p in pairs], [p.criterion_id for p in pairs], [p.label for p in pairs]

    train_texts, train_groups, train_labels = columns(train_idx)
    eval_texts, eval_groups, eval_labels = columns(eval_idx)
    probs = tfidf_baseline(train_texts, train_groups, train_labels, eval_texts, eval_groups, seed=seed)
    return evaluate(eval_labels, probs, eval_groups)


def train_from_spec(spec: Spec, output: Path, *, progress: Any = None, baseline: bool = True) -> RunResult:
    """Train the spec's single configuration (frozen values, else defaults) and write a run folder."""
    start = time.perf_counter()
    data = prepare_data(spec)
    config = spec.space.default()
    split = holdout(data.corpus, data.study_indices, spec.data.validation_fraction, spec.study.seed)
    job = make_job(spec, data, config, split.train, split.validation)
    result = fit(job, progress=progress)
    validation = result.best.metrics
    validation["threshold"] = result.threshold
    test = baseline_test = None
    if data.test_indices:
        test, _, _ = evaluate_indices(result.model, data, config, data.test_indices, result.threshold)
        if baseline:
            baseline_test = baseline_metrics(data.corpus, data.study_indices, data.test_indices, spec.study.seed)

    folder = output
    save_run_model(result, data, spec, config, folder)
    seconds = time.perf_counter() - start
    (folder / "metrics.json").write_text(json.dumps({
        "validation": validation, "test": test, "baseline_test": baseline_test,
        "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
        "history": [{"epoch": r.epoch, "train_loss": r.train_loss, "value": r.value,
                     "seconds": r.seconds, "train_samples_per_second": r.train_samples_per_second,
                     "overall": r.metrics["overall"]} for r in result.history],
        "seconds": seconds, "data_sha256": data.corpus.sha256,
    }, indent=2, default=_json_default))
    return RunResult(folder, result, validation, test, baseline_test, seconds)


def save_run_model(result: FitResult, data: PreparedData, spec: Spec, config: TrialConfig, folder: Path,
                   **metadata: Any) -> None:
    """Write ``folder/model`` (what ``criteria predict`` loads) and ``folder/spec.resolved.json``."""
    save_classifier(result.model, data.tokenizer, folder / "model", {
        "head": {"name": config.plugins["head"].name, "config": config.plugins["head"].config.model_dump()},
        "criteria": [vars(c) for c in data.corpus.criteria],
        "max_length": spec.data.max_length,
        "threshold": result.threshold,
        "num_labels": 2,
        "criteria_version": __version__,
        **metadata,
    }, peft=config.plugins["peft"])
    write_resolved_spec(spec, config, folder / "spec.resolved.json")


def write_resolved_spec(spec: Spec, config: TrialConfig, path: Path) -> None:
    path.write_text(json.dumps({
        "spec_file": str(spec.path),
        "spec": spec.raw,
        "resolved": config.params(),
        "study": spec.study.model_dump(),
        "data": spec.data.model_dump(),
        "model": spec.model.model_dump(),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return str(value)
