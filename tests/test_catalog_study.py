"""A study whose spec searches every registered plugin of every per-trial kind, on a tiny model.

Each optimizer gets one enqueued trial (the other kinds are sampled), so every optimizer family
trains end to end inside a real study, next to randomly drawn schedulers, PEFT methods, heads
and losses. A plugin that cannot train in some combination shows up here as a failed trial.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import optuna
import pytest
from criteria.data.loaders import embedded_corpus
from criteria.plugin.registry import get_registry
from criteria.spec.load import load_spec
from criteria.study.outcomes import FAILURE_ATTR
from criteria.study.runner import run_study
from criteria.study.storage import load_study

PER_TRIAL_KINDS = ("optimizer", "scheduler", "peft", "head", "loss")


def write_small_pairs(path: Path, posts: int = 24, seed: int = 0) -> Path:
    """A pairs CSV of a few embedded posts (all nine criteria each), so a trial takes seconds."""
    corpus = embedded_corpus()
    chosen = set(random.Random(seed).sample(sorted(corpus.post_ids()), posts))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["post_id", "text", "criterion_id", "status"])
        for pair in corpus.pairs:
            if pair.post_id in chosen:
                writer.writerow([pair.post_id, corpus.text(pair), pair.criterion_id, pair.label])
    return path


def available(kind: str) -> list[str]:
    return [name for name, info in get_registry().plugins(kind).items() if info.availability()]


@pytest.fixture
def catalog_spec(tmp_path, tiny_bert, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_small_pairs(tmp_path / "pairs.csv")
    spec = tmp_path / "catalog.toml"
    # No [optimizer]/[scheduler]/[peft]/[head]/[loss] sections: each searches all its available plugins.
    spec.write_text(f"""
[study]
name = "catalog"
trials = {len(available("optimizer"))}
seed = 3
[data]
format = "pairs"
path = "pairs.csv"
max_length = 64
test_fraction = 0.2
[model]
name = "{tiny_bert}"
[train]
epochs = 1
batch_size = 32
eval_batch_size = 128
patience = 0
[sampler]
use = "random"
[pruner]
use = "none"
""")
    return spec


def test_a_study_over_every_plugin_trains_each_optimizer(catalog_spec):
    spec = load_spec(catalog_spec, get_registry())
    for kind in PER_TRIAL_KINDS:  # the spec names no plugin: each kind searches all available ones
        assert sorted(spec.space.kinds[kind].options) == sorted(available(kind)), kind
    study = load_study(spec)
    for name in available("optimizer"):
        study.enqueue_trial({"optimizer": name})
    study, summary, _, tracker = run_study(spec, track=False, output=catalog_spec.parent / "out")
    trials = study.get_trials(deepcopy=False)
    failed = {t.params.get("optimizer"): t.user_attrs.get(FAILURE_ATTR) for t in trials
              if t.state != optuna.trial.TrialState.COMPLETE}
    assert failed == {}, failed
    assert sorted(t.params["optimizer"] for t in trials) == sorted(available("optimizer"))
    drawn = {kind: {t.params.get(kind) for t in trials} for kind in PER_TRIAL_KINDS[1:]}
    assert all(len(names) > 1 for names in drawn.values()), drawn  # the other kinds really vary
