"""Data: corpora (ReDSM5 folders, pairs CSVs, the embedded corpus), criteria, splits, evidence
sentences, augmented copies of training posts, unlabelled texts for pretraining, token ids
(cached) and length-bucketed batches.

Imports only the root modules (errors, cache); never the plugin system, the spec or the engine.

    corpus = load_corpus(spec.data, spec.path.parent)         # any DataSource: format, path, criteria
    rest, test = test_split(corpus, spec.data.test_fraction, seed)
    splits = kfold(corpus, rest, spec.data.folds, seed)      # or [holdout(corpus, rest, 0.2, seed)]
    for split in splits:
        train_pairs = corpus.subset(split.train)              # text: corpus.text(pair)
"""

from criteria.data.corpus import (
    CRITERION_NAMES,
    STANDARD_IDS,
    Corpus,
    Criterion,
    DataError,
    Pair,
    normalize_text,
)
from criteria.data.evidence import EvidencePairs, with_evidence_pairs
from criteria.data.loaders import (
    embedded_corpus,
    embedded_criteria,
    embedded_folder,
    load_criteria_json,
    load_pairs_csv,
    load_post_labels,
    load_redsm5,
    write_pairs_csv,
)
from criteria.data.sources import FORMATS, DataSource, detect_format, load_corpus
from criteria.data.splits import Split, holdout, kfold, test_split

__all__ = [
    "CRITERION_NAMES",
    "STANDARD_IDS",
    "Corpus",
    "DataSource",
    "FORMATS",
    "Criterion",
    "DataError",
    "EvidencePairs",
    "Pair",
    "Split",
    "detect_format",
    "embedded_corpus",
    "embedded_criteria",
    "embedded_folder",
    "holdout",
    "kfold",
    "load_corpus",
    "load_criteria_json",
    "load_pairs_csv",
    "load_post_labels",
    "load_redsm5",
    "normalize_text",
    "test_split",
    "with_evidence_pairs",
    "write_pairs_csv",
]
