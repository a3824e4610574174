"""criteria-schedulefree's tests: registration, the contract, a real step, the evaluation switch,
and the constant-scheduler requirement as a study and `criteria validate` see it."""

import pytest
from criteria.testing import PluginUnavailable, check_plugin, exercise_plugin, registered_plugin

from criteria_schedulefree import ScheduleFreeAdamW


@pytest.fixture
def available():
    if not ScheduleFreeAdamW.available():
        pytest.skip(ScheduleFreeAdamW.available().reason)


def test_it_is_registered_through_its_entry_point():
    info = registered_plugin("optimizer", "schedulefree_adamw", distribution="criteria-schedulefree")
    assert info.cls is ScheduleFreeAdamW


def test_it_honours_the_plugin_contract():
    check_plugin(ScheduleFreeAdamW)


def test_it_trains_a_tiny_classifier():
    try:
        optimizer = exercise_plugin(ScheduleFreeAdamW, lr=1e-2)
    except PluginUnavailable as exc:
        pytest.skip(str(exc))
    assert not optimizer.param_groups[0]["train_mode"]  # left in evaluation mode, as the engine leaves it


def test_evaluation_swaps_the_averaged_weights_in_and_training_swaps_them_out(available):
    import torch

    weight = torch.nn.Parameter(torch.ones(4))
    plugin = ScheduleFreeAdamW(lr=0.1, warmup_steps=0)
    optimizer = plugin.build([{"params": [weight]}])
    plugin.before_training(optimizer)
    for _ in range(3):
        weight.pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    trained = weight.detach().clone()
    plugin.before_evaluation(optimizer)
    averaged = weight.detach().clone()
    assert not torch.allclose(trained, averaged)
    plugin.before_training(optimizer)
    assert torch.allclose(weight.detach(), trained, atol=1e-6)


def test_a_study_pairs_it_only_with_the_constant_scheduler(tmp_path, available):
    import optuna
    from criteria.plugin.registry import Registry
    from criteria.spec.errors import SpecError
    from criteria.spec.load import load_spec

    registry = Registry.from_entry_points()
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('[optimizer]\nuse = ["adamw", "schedulefree_adamw"]\n'
                         '[scheduler]\nuse = ["linear", "cosine", "constant"]\n')
    spec = load_spec(spec_file, registry)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    pairs = set()
    for _ in range(30):
        trial = study.ask()
        config = spec.space.suggest(trial)
        pairs.add((config.optimizer.name, config.scheduler.name))
        study.tell(trial, 0.0)
    assert {s for o, s in pairs if o == "schedulefree_adamw"} == {"constant"}
    assert {s for o, s in pairs if o == "adamw"} == {"linear", "cosine", "constant"}

    spec_file.write_text('[optimizer]\nuse = "schedulefree_adamw"\n[scheduler]\nuse = "linear"\n')
    with pytest.raises(SpecError, match="requires scheduler 'constant'"):
        load_spec(spec_file, registry)
