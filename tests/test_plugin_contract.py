"""The versioned plugin contract: API versions, specname hooks, blocking single plugins,
requires/excludes between kinds (honoured by the search space, enforced by the spec), and the
engine's training/evaluation hooks."""

from __future__ import annotations

import json
import types

import optuna
import pytest
from criteria import PLUGIN_API, FloatParam, HeadPlugin, OptimizerPlugin, PluginConfig, hookimpl
from criteria.errors import CriteriaError
from criteria.plugin.registry import Registry
from criteria.spec.errors import SpecError
from criteria.spec.load import load_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


class LrConfig(PluginConfig):
    lr: float = FloatParam(0.1, ge=0.0, le=1.0, search=(0.01, 0.5), log=True)


class SelfScheduling(OptimizerPlugin):
    name = "self_scheduling"
    summary = "Schedules its own learning rate: only a constant scheduler makes sense with it."
    Config = LrConfig
    requires_plugins = {"scheduler": ("constant", "constant_with_warmup")}


class NoPooler(HeadPlugin):
    name = "no_pooler_head"
    summary = "A head that cannot sit on a prefix-tuned encoder."
    excludes_plugins = {"peft": ("prefix_tuning",)}


def module_with(**attributes) -> types.ModuleType:
    module = types.ModuleType("fake_plugins")
    for name, value in attributes.items():
        setattr(module, name, value)
    return module


@hookimpl
def register_optimizers(register):
    register(SelfScheduling)


@hookimpl
def register_heads(register):
    register(NoPooler)


# --- the API version -----------------------------------------------------------------------------


def test_plugin_api_is_a_documented_integer():
    import criteria

    assert PLUGIN_API == 1 and isinstance(PLUGIN_API, int)
    assert "PLUGIN_API" in criteria.__all__


@pytest.mark.parametrize("declared, loads", [(None, True), (1, True), ((1, 2), True), (range(1, 3), True),
                                             (2, False), ((2, 3), False), ("1", False), ((), False)])
def test_a_module_loads_only_under_an_api_version_it_declares(declared, loads):
    attributes = {"register_optimizers": register_optimizers}
    if declared is not None:
        attributes["CRITERIA_PLUGIN_API"] = declared
    registry = Registry()
    registry.add_module(module_with(**attributes), distribution="criteria-future", version="3.0")
    assert ("self_scheduling" in registry.plugins("optimizer")) is loads
    if not loads:
        [broken] = registry.broken
        assert broken.source == "criteria-future 3.0"
        assert "CRITERIA_PLUGIN_API" in broken.reason
        if isinstance(declared, (int, tuple)) and declared:
            assert f"provides plugin API {PLUGIN_API}" in broken.reason


# --- hooks by specname, and blocking one plugin ---------------------------------------------------


def test_a_hook_implemented_under_another_name_through_specname_registers():
    @hookimpl(specname="register_optimizers")
    def add_my_optimizers(register):
        register(SelfScheduling)

    @hookimpl(specname="register_optimisers")
    def misspelled(register):
        register(SelfScheduling)

    registry = Registry()
    registry.add_module(module_with(add_my_optimizers=add_my_optimizers), distribution="d", version="1")
    assert not registry.broken and "self_scheduling" in registry.plugins("optimizer")

    registry = Registry()
    registry.add_module(module_with(misspelled=misspelled), distribution="d", version="1")
    assert any("unknown hook 'register_optimisers'" in b.reason and "did you mean 'register_optimizers'" in b.reason
               for b in registry.broken)


def test_block_rules_switch_off_one_plugin_of_one_distribution():
    module = module_with(register_optimizers=register_optimizers, register_heads=register_heads)
    for rule, left in [("optimizer:self_scheduling", False), ("optimizer:self_scheduling@other-dist", True),
                       ("optimizer:self_scheduling@My_Dist", False)]:
        registry = Registry(blocked=[rule])
        registry.add_module(module, distribution="my-dist", version="1")
        assert ("self_scheduling" in registry.plugins("optimizer")) is left, rule
        assert "no_pooler_head" in registry.plugins("head")  # the distribution's other plugins stay
        assert not registry.broken
        assert (registry.blocked_plugin("optimizer", "self_scheduling") is None) is left
    for bad in ("self_scheduling", "optimiser:self_scheduling", "optimizer:x@"):
        with pytest.raises(CriteriaError, match="CRITERIA_BLOCK_PLUGINS entry") as info:
            Registry(blocked=[bad])
        assert "kind:name@distribution" in str(info.value)


def test_the_duplicate_hint_names_the_precise_block_and_it_works(with_plugins, cli):
    listed = json.loads(cli("plugins", "list", "--json").stdout)
    [duplicate] = [b for b in listed["broken"] if "duplicate" in b["reason"]]
    assert "CRITERIA_BLOCK_PLUGINS=optimizer:adamw@criteria-broken-plugin" in duplicate["reason"]
    assert "CRITERIA_BLOCK_PLUGINS=optimizer:adamw@criteria." in duplicate["reason"]

    blocked = json.loads(cli("plugins", "list", "--json",
                             env={"CRITERIA_BLOCK_PLUGINS": "optimizer:adamw@criteria-broken-plugin"}).stdout)
    assert not [b for b in blocked["broken"] if "duplicate" in b["reason"]]
    adamw = [p for p in blocked["plugins"] if p["name"] == "adamw"]
    assert [p["distribution"] for p in adamw] == ["criteria"]
    assert "broken_dist_ok" in {p["name"] for p in blocked["plugins"]}  # its sibling still loads

    bad = cli("plugins", "list", env={"CRITERIA_BLOCK_PLUGINS": "adamw"})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "kind:name" in bad.stderr


def test_a_spec_naming_a_blocked_plugin_says_so(tmp_path):
    registry = Registry.from_entry_points(allowed=[], blocked=["optimizer:lion"])
    spec = tmp_path / "spec.toml"
    spec.write_text('[optimizer]\nuse = "lion"\n')
    with pytest.raises(SpecError, match="CRITERIA_BLOCK_PLUGINS switches it off"):
        load_spec(spec, registry)


# --- requires / excludes --------------------------------------------------------------------------


def test_compatibility_declarations_are_checked_when_a_plugin_registers():
    bad = {
        "unknown kind": {"requires_plugins": {"schedular": ("constant",)}},
        "its own kind": {"excludes_plugins": {"optimizer": ("adamw",)}},
        "a tuple of plugin names": {"requires_plugins": {"scheduler": "constant"}},
        "is empty": {"requires_plugins": {"scheduler": ()}},
    }
    classes = [type(f"Bad{i}", (SelfScheduling,), {"name": f"bad{i}", **attrs}) for i, attrs in enumerate(bad.values())]

    @hookimpl
    def register_optimizers(register):
        register(*classes)

    registry = Registry()
    registry.add_module(module_with(register_optimizers=register_optimizers), distribution="d", version="1")
    reasons = {b.name: b.reason for b in registry.broken}
    for i, expected in enumerate(bad):
        assert expected in reasons[f"bad{i}"], reasons
    assert "did you mean 'scheduler'" in reasons["bad0"]


@pytest.fixture(scope="module")
def constrained_registry():
    """The built-ins plus an optimizer that requires a constant scheduler and a head that excludes
    prefix tuning."""
    registry = Registry.from_entry_points(allowed=[])
    registry.add_module(module_with(register_optimizers=register_optimizers, register_heads=register_heads),
                        distribution="criteria-constrained", version="1.0")
    assert not registry.broken
    return registry


def _spec(tmp_path, registry, text: str):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return load_spec(path, registry)


SEARCHED = """
[optimizer]
use = ["adamw", "self_scheduling"]
[scheduler]
use = ["linear", "cosine", "constant", "constant_with_warmup"]
[peft]
use = ["none", "lora", "prefix_tuning"]
[head]
use = ["linear", "no_pooler_head"]
"""


def test_the_search_offers_only_compatible_plugins_and_keeps_optuna_distributions_consistent(
        tmp_path, constrained_registry):
    from criteria.plugin.compatibility import conflict

    spec = _spec(tmp_path, constrained_registry, SEARCHED)
    dims = dict(spec.space.dimensions())
    # the unrestricted choice keeps the kind's name; a restricted one is named after its choices
    assert dims["scheduler"].choices == ("linear", "cosine", "constant", "constant_with_warmup")
    assert dims["scheduler[constant,constant_with_warmup]"].choices == ("constant", "constant_with_warmup")
    assert dims["head"].choices == ("linear", "no_pooler_head")
    assert "head[linear]" not in dims  # after prefix tuning one head is left: nothing to sample

    # TPE as the default sampler configures it for conditional spaces: multivariate and grouped.
    sampler = optuna.samplers.TPESampler(multivariate=True, group=True, n_startup_trials=5, seed=0)
    study = optuna.create_study(sampler=sampler)
    seen, sampled = set(), {}
    for _ in range(40):
        trial = study.ask()
        config = spec.space.suggest(trial)
        plugins = list(config.plugins.values())
        assert not [conflict(type(a), type(b)) for a in plugins for b in plugins if conflict(type(a), type(b))]
        chosen = sampled[trial.number] = {kind: p.name for kind, p in config.plugins.items()}
        seen.add((chosen["optimizer"], chosen["scheduler"], chosen["peft"], chosen["head"]))
        assert set(trial.params) <= set(dims), set(trial.params) - set(dims)
        study.tell(trial, float(trial.number % 7))
    assert all(t.state.name == "COMPLETE" for t in study.trials)  # a conflict never fails a trial
    optimizers = {combo[0] for combo in seen}
    assert optimizers == {"adamw", "self_scheduling"}
    assert {s for o, s, _, _ in seen if o == "self_scheduling"} <= {"constant", "constant_with_warmup"}
    assert not [c for c in seen if c[2] == "prefix_tuning" and c[3] == "no_pooler_head"]
    # a finished trial's parameters rebuild its configuration (what the export does)
    best = study.best_trial
    rebuilt = spec.space.suggest(optuna.trial.FixedTrial(best.params, number=best.number))
    assert {kind: p.name for kind, p in rebuilt.plugins.items()} == sampled[best.number]


def test_the_default_configuration_is_a_compatible_one(tmp_path, constrained_registry):
    spec = _spec(tmp_path, constrained_registry, '[optimizer]\nuse = ["self_scheduling", "adamw"]\n'
                                                  '[scheduler]\nuse = ["linear", "constant"]\n')
    default = spec.space.default()
    assert (default.optimizer.name, default.scheduler.name) == ("self_scheduling", "constant")


def test_validate_rejects_fixed_incompatible_plugins(tmp_path, constrained_registry):
    with pytest.raises(SpecError) as info:
        _spec(tmp_path, constrained_registry, '[optimizer]\nuse = "self_scheduling"\n[scheduler]\nuse = "linear"\n')
    message = str(info.value)
    assert "optimizer.use" in message and "optimizer 'self_scheduling' cannot be used" in message
    assert "requires scheduler one of 'constant', 'constant_with_warmup'" in message
    assert "[scheduler] allows only 'linear'" in message

    with pytest.raises(SpecError, match="head 'no_pooler_head' excludes peft 'prefix_tuning'"):
        _spec(tmp_path, constrained_registry, '[peft]\nuse = "prefix_tuning"\n[head]\nuse = "no_pooler_head"\n')


def test_an_incompatible_plugin_the_spec_did_not_name_is_left_out_quietly(tmp_path, constrained_registry):
    spec = _spec(tmp_path, constrained_registry, '[scheduler]\nuse = "linear"\n')
    assert "self_scheduling" not in spec.space.kinds["optimizer"].options
    assert "adamw" in spec.space.kinds["optimizer"].options


# --- the engine's training and evaluation hooks ---------------------------------------------------


class ShiftingSGD(OptimizerPlugin):
    """SGD whose evaluation weights are its training weights + 1, like a schedule-free optimizer's
    average: what the engine evaluates, keeps and returns must be the shifted weights."""

    name = "shifting_sgd"
    summary = "SGD that evaluates with shifted weights."
    Config = LrConfig

    def build(self, groups):
        import torch

        self.events: list[str] = []
        self.optimizer = torch.optim.SGD(self.param_groups(groups), lr=self.config.lr)
        return self.optimizer

    def weights(self) -> list:
        return [p.detach().clone() for group in self.optimizer.param_groups for p in group["params"]]

    def _shift(self, optimizer, by: float) -> None:
        import torch

        with torch.no_grad():
            for group in optimizer.param_groups:
                for param in group["params"]:
                    param.add_(by)

    def before_training(self, optimizer):
        self.events.append("train")
        if "eval" in self.events:
            self._shift(optimizer, -1.0)

    def before_evaluation(self, optimizer):
        self.events.append("eval")
        self._shift(optimizer, 1.0)


def test_the_engine_switches_plugins_between_training_and_evaluation(tiny_bert, tmp_path):
    import torch
    from builtin_plugins import write_tiny_spec
    from criteria.data.loaders import embedded_corpus
    from criteria.data.splits import holdout, test_split
    from criteria.data.tokens import encode_pairs
    from criteria.engine.fit import fit
    from criteria.engine.job import TrainingJob
    from criteria.engine.model import load_tokenizer

    spec = load_spec(write_tiny_spec(tmp_path, tiny_bert, epochs=3), Registry.from_entry_points(allowed=[]))
    default = spec.space.default()
    optimizer = ShiftingSGD(lr=0.01)
    config = type(default)(default.train, {**default.plugins, "optimizer": optimizer})
    corpus = embedded_corpus()
    tokenizer = load_tokenizer(spec.model.name)
    split = holdout(corpus, test_split(corpus, 0.2, 0)[0], 0.25, 0)
    job = TrainingJob(corpus=corpus, encoded=encode_pairs(tokenizer, corpus, 64), train_indices=split.train[:96],
                      validation_indices=split.validation[:64], config=config, model_name=spec.model.name,
                      pad_token_id=tokenizer.pad_token_id)
    at_validation = []  # the weights each epoch was scored with (callbacks run after validating)
    job.callbacks.append(lambda report: at_validation.append(optimizer.weights()))
    result = fit(job)

    assert optimizer.events == ["train", "eval"] * 3  # once per switch, never twice in a row
    returned = optimizer.weights()  # the returned model's weights are the optimizer's parameters
    kept = at_validation[result.best_epoch - 1]
    assert all(torch.equal(a, b) for a, b in zip(returned, kept)), "the model returned is the one scored"
    assert {id(p) for p in result.model.parameters()} >= {id(p) for g in optimizer.optimizer.param_groups
                                                           for p in g["params"]}
