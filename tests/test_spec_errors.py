"""Malformed specs: each gives one clear message naming the file, the key path, what was given,
what is allowed, and how to fix it; never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from criteria.errors import CriteriaError
from criteria.plugin.registry import get_registry
from criteria.spec.errors import SpecError
from criteria.spec.load import load_spec

CASES = {
    "bad_toml": (
        '[study]\nname = "unterminated\n',
        "", ["not valid TOML", "line 2"],
    ),
    "unknown_section": (
        "[optimiser]\nuse = 'adamw'\n",
        "optimiser", ["unknown section [optimiser]", "did you mean 'optimizer'"],
    ),
    "unknown_key_in_core_section": (
        "[study]\ntrails = 5\n",
        "study.trails", ["unknown key 'trails'", "did you mean 'trials'"],
    ),
    "wrong_type": (
        "[study]\ntrials = 'many'\n",
        "study.trials", ["valid integer", 'given:   "many"'],
    ),
    "core_value_out_of_bounds": (
        "[data]\nmax_length = 4\n",
        "data.max_length", ["greater than or equal to 16"],
    ),
    "enqueue_unknown_parameter": (
        "[optimizer]\nuse = ['adamw', 'lion']\n[[study.enqueue]]\n'optimizer.adamw.learnrate' = 1e-5\n",
        "study.enqueue.0.optimizer.adamw.learnrate",
        ["not a searched parameter", "did you mean 'optimizer.adamw.lr'", "criteria space"],
    ),
    "enqueue_value_outside_the_range": (
        "[optimizer]\nuse = ['adamw', 'lion']\n[[study.enqueue]]\noptimizer = 'sgd'\n",
        "study.enqueue.0.optimizer", ["outside the searched range", "allowed: choice(adamw, lion)"],
    ),
    "unknown_plugin": (
        "[optimizer]\nuse = ['adamw', 'lino']\n",
        "optimizer.use", ["unknown optimizer 'lino'", "did you mean 'lion'", "allowed:"],
    ),
    "unknown_plugin_parameter": (
        "[optimizer]\nuse = 'adamw'\n[optimizer.adamw]\nlearning_rate = 1e-4\n",
        "optimizer.adamw.learning_rate", ["has no parameter 'learning_rate'", "allowed: lr, weight_decay"],
    ),
    "value_out_of_declared_bounds": (
        "[optimizer]\nuse = 'adamw'\n[optimizer.adamw]\nlr = 5.0\n",
        "optimizer.adamw.lr", ["less than or equal to 0.01", "given:   5", "allowed: float >= 1e-07, <= 0.01"],
    ),
    "widened_range": (
        "[optimizer]\nuse = 'adamw'\n[optimizer.adamw]\nlr = {low = 1e-9, high = 1e-4}\n",
        "optimizer.adamw.lr", ["invalid search range", "bound 1e-09 is outside", "inside the bounds"],
    ),
    "empty_choice_list": (
        "[optimizer]\nuse = 'adamw'\n[optimizer.adamw]\nbetas = {choices = []}\n",
        "optimizer.adamw.betas", ["choices is empty"],
    ),
    "invalid_choice": (
        "[peft]\nuse = 'lora'\n[peft.lora]\ntargets = {choices = ['query_value', 'everything']}\n",
        "peft.lora.targets.choices", ["choice \"everything\" is not a valid value", "'all_linear'"],
    ),
    "empty_use_list": (
        "[loss]\nuse = []\n",
        "loss.use", ["list of plugins is empty"],
    ),
    "low_above_high": (
        "[train]\nhidden_dropout = {low = 0.3, high = 0.1}\n",
        "train.hidden_dropout", ["low (0.3) is greater than high (0.1)"],
    ),
    "log_range_from_zero": (
        "[scheduler]\nuse = 'cosine'\n[scheduler.cosine]\nmin_lr_ratio = {low = 0.0, high = 0.1, log = true}\n",
        "scheduler.cosine.min_lr_ratio", ["log-scaled range needs low > 0"],
    ),
    "unknown_range_key": (
        "[optimizer]\nuse = 'sgd'\n[optimizer.sgd]\nlr = {low = 1e-3, hi = 1e-1}\n",
        "optimizer.sgd.lr", ["unknown range key(s) hi", "{low, high[, log][, step]}"],
    ),
    "settings_for_unused_plugin": (
        "[optimizer]\nuse = 'adamw'\n[optimizer.lion]\nlr = 1e-5\n",
        "optimizer.lion", ["not in optimizer.use", "add 'lion' to optimizer.use"],
    ),
    "study_level_kind_searched": (
        "[pruner]\nuse = ['median', 'hyperband']\n",
        "pruner.use", ["chosen once per study", "name exactly one"],
    ),
    "study_level_parameter_range": (
        "[pruner]\nuse = 'median'\n[pruner.median]\nn_startup_trials = {low = 1, high = 5}\n",
        "pruner.median.n_startup_trials", ["cannot be searched"],
    ),
    "unavailable_plugin": (
        "[backend]\nuse = 'cuda'\n",
        "backend.use", ["backend 'cuda' is not available here", "needs"],
    ),
    "invalid_cross_field_value": (
        "[pruner]\nuse = 'hyperband'\n[pruner.hyperband]\nmin_resource = 5\nmax_resource = 2\n",
        "pruner.hyperband", ["max_resource (2) must be >= min_resource (5)"],
    ),
    "fp16_on_cpu": (
        "[backend]\nuse = 'cpu'\n[backend.cpu]\nprecision = 'fp16'\n",
        "backend.cpu.precision", ["20x slower"],
    ),
    "section_not_a_table": (
        "study = 3\n",
        "study", ["[study] must be a table"],
    ),
    "integer_range_with_fraction": (
        "[train]\nepochs = {low = 1.5, high = 4}\n",
        "train.epochs", ["integers"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_spec_gives_a_located_message(case, tmp_path):
    text, key, fragments = CASES[case]
    if case == "unavailable_plugin":
        if get_registry().get("backend", "cuda").availability():
            pytest.skip("this machine has CUDA")
    spec = tmp_path / "bad.toml"
    spec.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(spec, get_registry())
    message = str(info.value)
    assert f"{spec}: {key}" in message if key else f"{spec}:" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "Traceback" not in message


def test_every_problem_is_reported_at_once(tmp_path):
    spec = tmp_path / "two.toml"
    spec.write_text("[study]\ntrials = 0\n[optimizer]\nuse = 'nope'\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec, get_registry())
    assert len(info.value.problems) == 2
    assert "2 problems" in str(info.value)


def test_missing_file_and_non_utf8(tmp_path):
    with pytest.raises(CriteriaError, match="spec file not found"):
        load_spec(tmp_path / "nope.toml", get_registry())
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[study]\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(latin, get_registry())


def test_cli_prints_the_message_without_traceback(tmp_path, cli):
    spec = tmp_path / "bad.toml"
    spec.write_text("[optimizer]\nuse = 'adamww'\n")
    for command in ("validate", "space", "run"):
        result = cli(command, str(spec))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        assert "optimizer.use" in result.stderr and "did you mean 'adamw'" in result.stderr


def test_shipped_specs_are_valid():
    for spec in (Path(__file__).parents[1] / "specs").glob("*.toml"):
        load_spec(spec, get_registry())


def test_values_valid_together_pass_even_if_one_conflicts_with_a_default(tmp_path):
    # adalora requires target_r < init_r; init_r = 4 alone conflicts with the default target_r (8)
    spec = tmp_path / "ok.toml"
    spec.write_text("[peft]\nuse = 'adalora'\n[peft.adalora]\ninit_r = 4\ntarget_r = 2\n")
    plugin = load_spec(spec, get_registry()).space.kinds["peft"].default()
    assert (plugin.config.init_r, plugin.config.target_r) == (4, 2)
