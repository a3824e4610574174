"""The built-in plugins as the plugin tests use them: one registry of the built-in distribution
only (third-party plugins installed in the environment are not what they test), and a maker that
skips with the plugin's own reason where it cannot run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from criteria.plugin.registry import Registry, get_registry

BUILTINS = Registry.from_entry_points(allowed=[])


def make(kind: str, name: str, **config: Any):
    """An instance of a registered plugin (skipped with its reason when it cannot run here)."""
    info = BUILTINS.get(kind, name)
    availability = info.availability()
    if not availability:
        pytest.skip(f"{kind} {name!r}: {availability.reason}")
    return info.cls(info.cls.Config(**config))


def one_epoch_job(spec_path: Path):
    """A ``TrainingJob`` for the spec on a slice of the embedded corpus's splits (max length 64):
    an epoch that checks a plugin's wiring into the engine, not its score."""
    from criteria.data.loaders import embedded_corpus
    from criteria.data.splits import holdout, test_split
    from criteria.data.tokens import encode_units
    from criteria.engine.job import TrainingJob
    from criteria.engine.model import load_tokenizer
    from criteria.spec.load import load_spec

    spec = load_spec(spec_path, get_registry())
    corpus = embedded_corpus()
    tokenizer = load_tokenizer(spec.model.name)
    rest, _ = test_split(corpus, 0.2, 0)
    split = holdout(corpus, rest, 0.25, 0)
    config = spec.space.default()
    return TrainingJob(corpus=corpus, encoded=encode_units(tokenizer, config.formulation.units(corpus), 64),
                       train_indices=split.train[:320], validation_indices=split.validation[:160],
                       config=config, model_name=spec.model.name, pad_token_id=tokenizer.pad_token_id,
                       tune_threshold=config.train.tune_threshold)


def write_tiny_spec(folder: Path, model: Path, body: str = "", *, name: str = "tiny", epochs: int = 1,
                    train: str = "") -> Path:
    """``folder/spec.toml``: a fast spec on ``model`` (max length 64, ``epochs`` epochs, batch 32,
    no early stopping); ``train`` adds ``[train]`` lines, ``body`` plugin sections after them."""
    spec = folder / "spec.toml"
    spec.write_text(f"""
[study]
name = "{name}"
[data]
max_length = 64
[model]
name = "{model}"
[train]
epochs = {epochs}
batch_size = 32
eval_batch_size = 128
patience = 0
{train}
{body}
""")
    return spec
