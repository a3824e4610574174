"""The search space built from plugin declarations and a spec, sampled by a real Optuna study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from criteria.engine.config import TrainConfig
from criteria.plugin.fields import params_of
from criteria.plugin.ranges import Categorical, FloatRange
from criteria.spec.load import load_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).parents[1]


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_empty_spec_searches_every_available_plugin_of_per_trial_kinds(tmp_path, registry):
    spec = load_spec(write(tmp_path, ""), registry)
    for kind_name, kind_space in spec.space.kinds.items():
        available = [n for n, info in registry.plugins(kind_name).items() if info.availability()]
        expected = available if kind_space.kind.searched_by_default else [kind_space.default().name]
        assert sorted(kind_space.options) == sorted(expected), kind_name
        # the default (what `criteria train` uses) is the highest-priority available plugin
        top = max(registry.plugins(kind_name)[n].cls.priority for n in available)
        assert type(kind_space.default()).priority == top, kind_name
    defaults = {kind: plugin.name for kind, plugin in spec.space.default().plugins.items()}
    assert defaults == {"optimizer": "adamw", "scheduler": "linear", "peft": "none", "formulation": "pair",
                        "head": "linear", "loss": "cross_entropy", "augmenter": "none", "masking": "token",
                        "backend": "cpu"}
    # samplers and pruners are chosen once per study: the highest-priority available one
    assert spec.sampler.name == "tpe" and spec.pruner.name == "median"
    assert "backend" in spec.space.kinds and spec.space.kinds["backend"].default().name == "cpu"


def test_parameter_names_are_namespaced_and_conditional(tmp_path, registry):
    spec = load_spec(write(tmp_path, '[optimizer]\nuse = ["adamw", "lion"]\n'), registry)
    dims = dict(spec.space.dimensions())
    assert dims["optimizer"] == Categorical(("adamw", "lion"))
    assert "optimizer.adamw.lr" in dims and "optimizer.lion.lr" in dims
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        config = spec.space.suggest(trial)
        chosen = config.plugins["optimizer"].name
        prefixes = {name.split(".")[1] for name in trial.params if name.startswith("optimizer.")}
        assert prefixes == {chosen}, "only the chosen optimizer's parameters are sampled"
        study.tell(trial, 0.0)


def test_every_dimension_comes_from_a_declaration(tmp_path, registry):
    """Without spec ranges, each searched range is exactly what the plugin (or TrainConfig) declares."""
    spec = load_spec(write(tmp_path, '[backend]\nuse = "cpu"\n[train]\nbatch_size = {choices = [8, 16]}\n'), registry)
    for name, search in spec.space.dimensions():
        parts = name.split(".")
        if len(parts) == 1:
            assert set(search.choices) <= set(registry.plugins(parts[0]))
            continue
        if parts[0] == "train":
            continue
        kind, plugin, field = parts
        declared = params_of(registry.get(kind, plugin).cls.Config)[field].declared
        assert search == declared, name


def test_spec_narrows_freezes_and_samples_inside(tmp_path, registry):
    text = """
[optimizer]
use = "adamw"
[optimizer.adamw]
lr = {low = 1e-4, high = 3e-4}
weight_decay = 0.05
betas = {choices = [[0.9, 0.98]]}
[train]
hidden_dropout = {low = 0.05, high = 0.1}
batch_size = 32
"""
    spec = load_spec(write(tmp_path, text), registry)
    space = spec.space.kinds["optimizer"].options["adamw"][1]
    assert space.searched["lr"] == FloatRange(1e-4, 3e-4, log=True)  # log inherited from the declaration
    assert space.fixed["weight_decay"] == 0.05
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        config = spec.space.suggest(trial)
        optimizer = config.plugins["optimizer"].config
        assert 1e-4 <= optimizer.lr <= 3e-4 and optimizer.weight_decay == 0.05
        assert optimizer.betas == (0.9, 0.98)
        assert 0.05 <= config.train.hidden_dropout <= 0.1 and config.train.batch_size == 32
        assert "optimizer" not in trial.params  # a single choice is not a dimension
        study.tell(trial, 0.0)


def test_tuple_choices_round_trip_through_optuna_storage(tmp_path, registry):
    spec = load_spec(write(tmp_path, '[optimizer]\nuse = "adamw"\n'), registry)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", sampler=optuna.samplers.TPESampler(seed=0))
    trial = study.ask()
    betas = spec.space.suggest(trial).plugins["optimizer"].config.betas
    assert isinstance(betas, tuple) and trial.params["optimizer.adamw.betas"] == f"({betas[0]}, {betas[1]})"


def test_default_configuration_uses_defaults_and_frozen_values(tmp_path, registry):
    spec = load_spec(write(tmp_path, '[optimizer]\nuse = ["lion", "adamw"]\n[optimizer.lion]\nlr = 2e-5\n'), registry)
    config = spec.space.default()
    assert config.plugins["optimizer"].name == "lion" and config.plugins["optimizer"].config.lr == 2e-5
    assert config.train == TrainConfig()
    flat = config.params()
    assert flat["optimizer"] == "lion" and flat["optimizer.lion.lr"] == 2e-5 and "train.batch_size" in flat


def test_default_study_spec_searches_every_kind(registry):
    spec = load_spec(ROOT / "specs" / "study.toml", registry)
    searched_kinds = {name.split(".")[0] for name, _ in spec.space.dimensions()}
    assert {"train", "optimizer", "scheduler", "formulation", "loss", "head"} <= searched_kinds
    assert len(spec.space.kinds["optimizer"].options) >= 3


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_samplers_drive_the_conditional_space(tmp_path, registry, sampler):
    spec = load_spec(write(tmp_path, f'[sampler]\nuse = "{sampler}"\n[backend]\nuse = "cpu"\n'), registry)
    study = optuna.create_study(sampler=spec.sampler.build(seed=3), direction="maximize")

    def objective(trial):
        config = spec.space.suggest(trial)
        return config.plugins["optimizer"].config.lr

    study.optimize(objective, n_trials=12)
    assert len(study.trials) == 12
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
