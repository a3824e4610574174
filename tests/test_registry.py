"""The registry: entry-point loading, provenance, isolation of broken plugins, lookups."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest
from criteria import FloatParam, LossPlugin, OptimizerPlugin, PluginConfig, hookimpl
from criteria.errors import UnknownPluginError
from criteria.plugin.kinds import KINDS
from criteria.plugin.registry import Registry

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "optuna", "mlflow")


def test_builtins_load_through_entry_points_with_provenance(registry):
    assert not registry.broken, registry.broken
    for kind in KINDS:
        assert registry.plugins(kind), f"no built-in {kind.name}"
    adamw = registry.get("optimizer", "adamw")
    assert adamw.distribution == "criteria"
    assert adamw.version
    assert adamw.cls.__module__ == "criteria_builtins.optimizers"


def test_unknown_name_suggests_the_closest(registry):
    with pytest.raises(UnknownPluginError) as info:
        registry.get("optimizer", "adamww")
    message = str(info.value)
    assert "did you mean 'adamw'" in message
    assert "criteria plugins list" in message


def test_listing_imports_nothing_heavy():
    code = (
        "import sys, contextlib, io\n"
        "from criteria.cli import app\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        app(['plugins', 'list'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    try:\n"
        "        app(['plugins', 'list', '--json'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


# --- isolation, with in-memory "distributions" -------------------------------------------------


class GoodConfig(PluginConfig):
    lr: float = FloatParam(0.1, ge=0.0, le=1.0, search=(0.01, 0.5))


class GoodOptimizer(OptimizerPlugin):
    name = "good"
    summary = "A fine plugin."
    Config = GoodConfig


def module_with(**functions) -> types.ModuleType:
    module = types.ModuleType("fake_plugins")
    for name, function in functions.items():
        setattr(module, name, function)
    return module


def test_a_raising_hook_is_isolated():
    @hookimpl
    def register_optimizers(register):
        register(GoodOptimizer)

    @hookimpl
    def register_losses(register):
        raise RuntimeError("boom")

    registry = Registry()
    registry.add_module(module_with(register_optimizers=register_optimizers, register_losses=register_losses),
                        distribution="fake-dist", version="9.9")
    assert "good" in registry.plugins("optimizer")
    [broken] = registry.broken
    assert broken.source == "fake-dist 9.9"
    assert "RuntimeError: boom" in broken.reason


def test_bad_config_classes_are_reported_not_loaded():
    class OutOfBounds(PluginConfig):
        weight: float = FloatParam(0.5, ge=0.0, le=1.0, search=(0.0, 5.0))

    class BadDefault(PluginConfig):
        weight: float = FloatParam(7.0, ge=0.0, le=1.0)

    class Loose(GoodConfig):
        model_config = {"extra": "allow"}

    def plugin(name, config):
        return type(name, (LossPlugin,), {"name": name, "summary": "x", "Config": config})

    class NoLr(PluginConfig):
        momentum: float = 0.0

    nolr = type("NoLr", (OptimizerPlugin,), {"name": "nolr", "summary": "x", "Config": NoLr})

    @hookimpl
    def register_losses(register):
        register(plugin("range_too_wide", OutOfBounds), plugin("bad_default", BadDefault),
                 plugin("loose", Loose), plugin("fine", GoodConfig), int)

    @hookimpl
    def register_optimizers(register):
        register(nolr)

    registry = Registry()
    registry.add_module(module_with(register_losses=register_losses, register_optimizers=register_optimizers),
                        distribution="d", version="1")
    assert list(registry.plugins("loss")) == ["fine"]
    reasons = {b.name: b.reason for b in registry.broken}
    assert "outside the valid values" in reasons["range_too_wide"]
    assert "defaults are invalid" in reasons["bad_default"]
    assert "extra" in reasons["loose"]
    assert "needs an `lr` field" in reasons["nolr"]
    assert any("not a subclass" in b.reason for b in registry.broken)


def test_duplicate_names_name_both_distributions():
    @hookimpl
    def register_optimizers(register):
        register(GoodOptimizer)

    registry = Registry()
    registry.add_module(module_with(register_optimizers=register_optimizers), distribution="first", version="1")
    registry.add_module(module_with(register_optimizers=register_optimizers), distribution="second", version="2")
    assert registry.get("optimizer", "good").distribution == "first"
    [broken] = registry.broken
    assert "first 1" in broken.reason and "second 2" in broken.reason


def test_misspelled_hook_is_reported():
    @hookimpl
    def register_optimisers(register):
        register(GoodOptimizer)

    registry = Registry()
    registry.add_module(module_with(register_optimisers=register_optimisers), distribution="d", version="1")
    [broken] = registry.broken
    assert "did you mean 'register_optimizers'" in broken.reason


# --- the real fixture distributions, installed ---------------------------------------------------


def test_third_party_plugin_appears_in_plugins_list(with_plugins, cli):
    result = cli("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    demo = [p for p in payload["plugins"] if p["name"] == "demo_sgd"]
    assert demo and demo[0]["distribution"] == "criteria-demo-plugin" and demo[0]["version"] == "1.2.3"
    assert demo[0]["params"]["lr"]["search"] == {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}
    # the partly broken distribution: its valid plugin loads, each failure is listed with its reason
    names = {p["name"] for p in payload["plugins"]}
    assert "broken_dist_ok" in names
    assert len(names) >= 20  # every built-in still loads
    reasons = "\n".join(f'{b["what"]}: {b["reason"]}' for b in payload["broken"])
    assert all(b["distribution"] == "criteria-broken-plugin" for b in payload["broken"])
    assert "No module named 'criteria_package_that_does_not_exist'" in reasons
    assert "bad_loss" in reasons and "outside the valid values" in reasons
    assert "this hook always fails" in reasons
    assert "duplicate optimizer name 'adamw'" in reasons and "criteria 0.1.0" in reasons
    table = cli("plugins", "list")
    assert table.returncode == 0
    assert "demo_sgd" in table.stdout and "criteria-demo-plugin 1.2.3" in table.stdout
    assert "Broken plugins (4)" in table.stdout


def test_environment_variable_restricts_distributions(with_plugins, cli):
    only_demo = json.loads(cli("plugins", "list", "--json", env={"CRITERIA_LOAD_PLUGINS": "criteria-demo-plugin"}).stdout)
    names = {p["name"] for p in only_demo["plugins"]}
    assert "demo_sgd" in names and "adamw" in names  # built-ins always load
    assert "broken_dist_ok" not in names and not only_demo["broken"]
    none = json.loads(cli("plugins", "list", "--json", env={"CRITERIA_LOAD_PLUGINS": ""}).stdout)
    assert "demo_sgd" not in {p["name"] for p in none["plugins"]}


def test_third_party_plugin_joins_the_search_space(with_plugins, tmp_path):
    import optuna
    from criteria.spec.load import load_spec

    spec_file = tmp_path / "spec.toml"
    spec_file.write_text("[optimizer]\nsearch_params = true\n")
    registry = Registry.from_entry_points(allowed=["criteria-demo-plugin"])
    spec = load_spec(spec_file, registry)
    optimizers = spec.space.kinds["optimizer"].options
    assert "demo_sgd" in optimizers
    names = dict(spec.space.dimensions())
    assert "demo_sgd" in names["optimizer"].choices
    assert "optimizer.demo_sgd.momentum" in names
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        seen.add(spec.space.suggest(trial).plugins["optimizer"].name)
        study.tell(trial, 0.0)
    assert "demo_sgd" in seen
