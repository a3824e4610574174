"""Continued pretraining (``[pretrain]``): masking strategies, token windows, the MLM head created
for a checkpoint without one, the adapted-encoder cache, TAPT on training posts only, and the
stage's place in the spec and the search space."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
import transformers
from builtin_plugins import BUILTINS, make
from criteria.data.loaders import embedded_corpus
from criteria.data.splits import holdout, test_split
from criteria.engine.config import PretrainConfig
from criteria.engine.masked_lm import HEAD_FILE, load_masked_lm
from criteria.engine.model import load_tokenizer
from criteria.engine.pretraining import RECORD_FILE, adapt_encoder, mask_tokens, token_windows
from criteria.engine.runtime import Runtime
from criteria.errors import CriteriaError
from criteria.spec.load import load_spec
from criteria.study.stages import pretraining_texts

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _words(lengths=(1, 2, 3, 1, 1, 2), repeat=20):
    """Word indices of a sequence with a special token at each end: words of the given piece counts."""
    pieces = np.tile(np.asarray(lengths), repeat)
    return np.concatenate([[-1], np.repeat(np.arange(len(pieces)), pieces), [-1]])


@pytest.mark.parametrize("name", ["token", "whole_word", "span"])
def test_strategies_choose_about_the_share_asked_and_never_a_special_token(name):
    words = _words()
    select = make("masking", name).build(0.15)
    shares = []
    for seed in range(30):
        chosen = select(words, np.random.default_rng(seed))
        assert chosen.dtype == bool and chosen.shape == words.shape
        assert not chosen[words < 0].any()
        shares.append(chosen.sum() / (words >= 0).sum())
    assert 0.12 <= np.mean(shares) <= 0.18


@pytest.mark.parametrize("name", ["whole_word", "span"])
def test_word_strategies_mask_every_piece_of_a_chosen_word(name):
    words = _words()
    select = make("masking", name).build(0.3)
    for seed in range(10):
        chosen = select(words, np.random.default_rng(seed))
        for word in np.unique(words[chosen]):
            assert chosen[words == word].all(), "a word was masked in part"


def test_span_masking_masks_runs_of_words():
    words = _words(lengths=(1,), repeat=200)
    runs = []
    for seed in range(10):
        chosen = make("masking", "span", mean_length=4.0).build(0.2)(words, np.random.default_rng(seed))
        edges = np.flatnonzero(np.diff(np.concatenate([[0], chosen.astype(int), [0]])))
        runs += list(edges[1::2] - edges[::2])
    single = make("masking", "token").build(0.2)
    token_runs = []
    for seed in range(10):
        chosen = single(words, np.random.default_rng(seed))
        edges = np.flatnonzero(np.diff(np.concatenate([[0], chosen.astype(int), [0]])))
        token_runs += list(edges[1::2] - edges[::2])
    assert np.mean(runs) > 2 * np.mean(token_runs)


def test_chosen_tokens_are_masked_replaced_or_kept_as_bert_does():
    ids = np.arange(1000, 21000, dtype=np.int64)
    chosen = np.zeros(len(ids), dtype=bool)
    chosen[::2] = True
    inputs, labels = mask_tokens(ids, chosen, mask_token_id=4, vocab_size=30000, rng=np.random.default_rng(0))
    assert (labels[~chosen] == -100).all() and (labels[chosen] == ids[chosen]).all()
    assert (inputs[~chosen] == ids[~chosen]).all()
    masked = (inputs[chosen] == 4).mean()
    kept = (inputs[chosen] == ids[chosen]).mean()
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.02


def test_long_texts_become_several_windows_and_no_token_is_lost():
    tokenizer = load_tokenizer(None)
    text = " ".join(f"word{i} feels hopeless" for i in range(200))
    windows = token_windows(tokenizer, [text, "short text"], max_length=32)
    assert len(windows) > 2 and max(windows.lengths) <= 32
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    inner = [int(t) for ids, words in zip(windows.ids[:-1], windows.words[:-1]) for t, w in zip(ids, words) if w >= 0]
    assert inner == whole
    assert all(words[0] == -1 and words[-1] == -1 for words in windows.words)


def test_a_model_without_an_mlm_head_gets_one_tied_to_its_input_embeddings(tiny_bert):
    tokenizer = load_tokenizer(str(tiny_bert))
    masked_lm = load_masked_lm(str(tiny_bert), tokenizer)
    assert masked_lm.created_head
    model = masked_lm.model
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    dense = model.cls.predictions.transform.dense
    assert torch.equal(dense.weight, torch.eye(dense.in_features))


def _stage(tiny_bert, tmp_path, monkeypatch, **settings):
    monkeypatch.setenv("CRITERIA_CACHE_DIR", str(tmp_path / "cache"))
    tokenizer = load_tokenizer(str(tiny_bert))
    texts = [post for post in list(embedded_corpus().posts.values())[:24]]
    config = PretrainConfig(**{"epochs": 1, "batch_size": 8, "max_length": 48, **settings})
    return adapt_encoder(str(tiny_bert), tokenizer, texts, config, make("masking", "whole_word"), Runtime(), seed=3)


def test_the_adapted_encoder_is_a_plain_model_folder_and_keeps_the_pooler(tiny_bert, tmp_path, monkeypatch):
    adapted = _stage(tiny_bert, tmp_path, monkeypatch)
    assert not adapted.cached and adapted.record["created_head"]
    steps = len(adapted.losses)
    assert steps >= 3 and all(np.isfinite(adapted.losses)) and len(adapted.epoch_losses) == 1
    folder = tmp_path / "cache" / "pretrained" / adapted.key
    assert str(folder) == adapted.location and (folder / RECORD_FILE).is_file() and (folder / HEAD_FILE).is_file()
    before = transformers.AutoModel.from_pretrained(tiny_bert)
    after = transformers.AutoModel.from_pretrained(adapted.location)
    assert torch.equal(before.pooler.dense.weight, after.pooler.dense.weight)  # not in the MLM form: kept
    assert not torch.equal(before.encoder.layer[0].attention.self.query.weight,
                           after.encoder.layer[0].attention.self.query.weight)
    # the trained head comes back with the adapted folder: not created again
    assert not load_masked_lm(adapted.location, load_tokenizer(adapted.location)).created_head


def test_the_same_stage_is_pretrained_once(tiny_bert, tmp_path, monkeypatch):
    first = _stage(tiny_bert, tmp_path, monkeypatch)
    again = _stage(tiny_bert, tmp_path, monkeypatch)
    assert again.cached and again.location == first.location and again.losses == first.losses
    other = _stage(tiny_bert, tmp_path, monkeypatch, probability=0.3)
    assert not other.cached and other.key != first.key


def test_tapt_reads_the_training_posts_of_the_split_only():
    corpus = embedded_corpus()
    rest, test = test_split(corpus, 0.2, 13)
    split = holdout(corpus, rest, 0.2, 13)
    texts = pretraining_texts(PretrainConfig(tapt=True), corpus, split.train)
    train_posts = set(corpus.post_ids(split.train))
    held_out = set(corpus.post_ids(split.validation)) | set(corpus.post_ids(test))
    assert len(texts) == len(train_posts)
    assert set(texts) == {corpus.posts[p] for p in train_posts}
    assert not set(texts) & {corpus.posts[p] for p in held_out}
    dapt = pretraining_texts(PretrainConfig(tapt=False, corpus="domain.txt"), corpus, split.train, ("a", "b"))
    assert dapt == ["a", "b"]


def _write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_the_stage_and_its_masking_strategy_are_searched_only_where_the_stage_runs(tmp_path, registry):
    spec = load_spec(_write(tmp_path, """
[pretrain]
epochs = {choices = [0, 1, 2]}
probability = {low = 0.1, high = 0.3}
[masking]
use = ["token", "whole_word", "span"]
search_params = true
"""), registry)
    dims = dict(spec.space.dimensions())
    assert {"pretrain.epochs", "pretrain.probability", "masking", "masking.span.mean_length"} <= set(dims)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        config = spec.space.suggest(trial)
        runs = config.pretraining is not None
        seen.add(runs)
        assert ("masking" in trial.params) == runs
        assert ("masking" in config.params()) == runs
        study.tell(trial, 0.0)
    assert seen == {True, False}


def test_a_spec_without_pretrain_has_no_stage_dimension(tmp_path, registry):
    spec = load_spec(_write(tmp_path, ""), registry)
    names = [name for name, _ in spec.space.dimensions()]
    assert not [n for n in names if n.startswith(("pretrain", "masking", "augmenter"))]
    assert spec.space.default().pretraining is None


@pytest.mark.parametrize("text, key, words", [
    ('[masking]\nuse = "span"\n', "masking", "no [pretrain] section"),
    ('[pretrain]\ncorpus = "missing.txt"\n', "pretrain.corpus", "is not a file"),
    ("[pretrain]\ntapt = false\n", "pretrain", "nothing to pretrain on"),
    ('[pretrain]\ncorpus = {choices = ["a.txt", "b.txt"]}\n', "pretrain.corpus", "cannot be searched"),
    ("[pretrain]\nprobability = 0.95\n", "pretrain.probability", "less than or equal to 0.8"),
])
def test_stage_mistakes_are_spec_errors_with_their_key(tmp_path, registry, text, key, words):
    with pytest.raises(CriteriaError) as caught:
        load_spec(_write(tmp_path, text), registry)
    message = str(caught.value)
    assert key in message and words in message


def test_every_masking_strategy_is_a_builtin():
    assert {info.name for info in BUILTINS.plugins("masking").values()} >= {"token", "whole_word", "span"}


def test_trials_that_share_a_stage_pretrain_once_and_log_the_loss_curve(workdir, tiny_bert, monkeypatch):
    """Two trials with one pretraining configuration: the second adapts from the cache; each
    trial's run holds the MLM loss of every step, and the summary counts the cache hit."""
    from criteria.plugin.registry import get_registry
    from criteria.study.runner import run_study
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("CRITERIA_CACHE_DIR", str(workdir / "cache"))
    spec_path = workdir / "study.toml"
    spec_path.write_text(f"""
[study]
name = "tiny-pretrain"
trials = 2
seed = 7
[data]
max_length = 48
[model]
name = "{tiny_bert}"
[train]
epochs = 1
batch_size = 64
eval_batch_size = 256
patience = 0
[pretrain]
epochs = 1
batch_size = 32
max_length = 48
[masking]
use = "span"
[sampler]
use = "random"
[pruner]
use = "none"
[optimizer]
use = "adamw"
[optimizer.adamw]
lr = {{low = 1e-4, high = 1e-3}}
[peft]
use = "none"
[formulation]
use = "multilabel"
""")
    spec = load_spec(spec_path, get_registry())
    study, summary, _, tracker = run_study(spec)
    tracker.finish()
    assert summary.counts["complete"] == 2
    assert summary.pretraining == {"used": 2, "pretrained": 1, "cached": 1}
    records = [t.user_attrs["pretrained"][0] for t in study.trials]
    assert [r["cached"] for r in records] == [False, True] and records[0]["key"] == records[1]["key"]
    client = MlflowClient(tracker.uri)  # the tracker's store, whatever an earlier test set as the default
    runs = client.search_runs([tracker.experiment_id], "tags.`criteria.trial` = '1'")
    curve = client.get_metric_history(runs[0].info.run_id, "pretrain_mlm_loss")
    assert len(curve) >= 2 and [m.step for m in curve] == list(range(1, len(curve) + 1))
    assert runs[0].data.tags["criteria.pretrain"] == "cache"
    assert runs[0].data.params["masking"] == "span" and runs[0].data.params["pretrain.epochs"] == "1"


def test_a_domain_corpus_is_a_text_file_or_a_csv_column(tmp_path):
    from criteria.data.texts import load_texts

    (tmp_path / "domain.txt").write_text("First  document.\n\n  Second one.\n")
    assert load_texts(tmp_path / "domain.txt") == ("First document.", "Second one.")
    (tmp_path / "domain.csv").write_text('id,body\n1,"A post, with a comma."\n2,\n3,Another.\n')
    assert load_texts(tmp_path / "domain.csv", "body") == ("A post, with a comma.", "Another.")


def test_validate_reads_the_domain_corpus_and_names_a_bad_one(tmp_path, cli):
    (tmp_path / "domain.csv").write_text("id,body\n1,I feel low.\n")
    spec = _write(tmp_path, '[pretrain]\ncorpus = "domain.csv"\ntext_column = "body"\n')
    ok = cli("validate", str(spec))
    assert ok.returncode == 0 and "domain.csv: 1 texts" in ok.stdout
    spec.write_text('[pretrain]\ncorpus = "domain.csv"\n')
    bad = cli("validate", str(spec))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "domain.csv" in bad.stderr and "'text'" in bad.stderr
