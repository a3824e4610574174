"""Every built-in plugin through criteria.testing, the helper third-party packages use: the
contract (nothing heavy imported at module level included), then a real run of what it builds.
And the helper itself: it catches what it promises to catch."""

from __future__ import annotations

import sys
import textwrap

import pytest
from builtin_plugins import BUILTINS
from criteria import FloatParam, HeadPlugin, LossPlugin, OptimizerPlugin, PluginConfig, Requirements
from criteria.plugin.kinds import KINDS
from criteria.testing import PluginUnavailable, check_plugin, contract_problems, exercise_plugin

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

BUILTIN = [(info.kind.name, info.name) for info in BUILTINS if info.distribution == "criteria"]


@pytest.mark.parametrize("kind, name", BUILTIN, ids=[f"{k}:{n}" for k, n in BUILTIN])
def test_builtin_plugin_honours_the_contract_and_runs(kind, name):
    cls = BUILTINS.get(kind, name).cls
    check_plugin(cls)
    try:
        exercise_plugin(cls)
    except PluginUnavailable as exc:
        pytest.skip(str(exc))


def test_every_kind_can_be_exercised():
    kinds = {kind for kind, _ in BUILTIN}
    assert kinds == {kind.name for kind in KINDS}  # a new kind needs a built-in and an exercise


# --- what the helper catches -------------------------------------------------------------------------


class LrConfig(PluginConfig):
    lr: float = FloatParam(0.1, ge=0.0, le=1.0, search=(0.01, 0.5))


def test_contract_problems_are_listed_together():
    class Nameless(LossPlugin):
        summary = "two\nlines"

    class WideRange(PluginConfig):
        weight: float = FloatParam(0.5, ge=0.0, le=1.0, search=(0.0, 2.0))

    class BadRange(LossPlugin):
        name = "bad_range"
        summary = "x"
        Config = WideRange

    problems = contract_problems(Nameless, check_imports=False)
    assert any("needs a `name`" in p for p in problems) and any("one-line `summary`" in p for p in problems)
    with pytest.raises(AssertionError, match="declares a bad search range"):
        check_plugin(BadRange, check_imports=False)


def test_an_unavailable_plugin_needs_a_reason_and_is_not_run():
    class Silent(HeadPlugin):
        name = "silent"
        summary = "Unavailable without saying why."

        @classmethod
        def available(cls):
            from criteria import Availability

            return Availability(False)

    class Missing(HeadPlugin):
        name = "missing"
        summary = "Needs a package that is not installed."
        requires = Requirements.of({"criteria_no_such_module": "criteria-no-such-package"})

    assert any("without a reason" in p for p in contract_problems(Silent, check_imports=False))
    check_plugin(Missing, check_imports=False)  # unavailable with a reason is fine
    with pytest.raises(PluginUnavailable, match="pip install criteria-no-such-package"):
        exercise_plugin(Missing)


def test_a_module_level_heavy_import_is_caught(tmp_path, monkeypatch):
    (tmp_path / "heavy_plugin.py").write_text(textwrap.dedent("""
        import torch  # at module level: every `criteria plugins list` would pay for it
        from criteria import FloatParam, OptimizerPlugin, PluginConfig

        class Config(PluginConfig):
            lr: float = FloatParam(0.1, ge=0.0, le=1.0)

        class Heavy(OptimizerPlugin):
            name = "heavy"
            summary = "Imports torch too early."
            Config = Config

            def build(self, groups):
                return torch.optim.SGD(self.param_groups(groups), lr=self.config.lr)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from heavy_plugin import Heavy

    with pytest.raises(AssertionError, match="importing heavy_plugin imports torch"):
        check_plugin(Heavy)
    sys.modules.pop("heavy_plugin", None)


def test_an_optimizer_that_ignores_the_parameter_groups_is_caught():
    class OneGroup(OptimizerPlugin):
        name = "one_group"
        summary = "Flattens the engine's groups (and so their learning rates)."
        Config = LrConfig

        def build(self, groups):
            import torch

            return torch.optim.SGD([p for g in groups for p in g["params"]], lr=self.config.lr)

    with pytest.raises(AssertionError, match="pass self.param_groups"):
        exercise_plugin(OneGroup)


def test_a_head_with_the_wrong_output_shape_is_caught():
    class Wide(HeadPlugin):
        name = "wide"
        summary = "Returns one logit too many."

        def build(self, hidden_size, num_labels):
            import torch

            class Head(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.linear = torch.nn.Linear(hidden_size, num_labels + 1)

                def forward(self, hidden, mask):
                    return self.linear(hidden[:, 0])

            return Head()

    with pytest.raises(AssertionError, match=r"not \(batch, num_labels\) = \(4, 2\)"):
        exercise_plugin(Wide)


def test_registered_plugin_finds_an_installed_plugin_and_explains_a_missing_one():
    from criteria.testing import registered_plugin

    assert registered_plugin("optimizer", "adamw", distribution="criteria").distribution == "criteria"
    with pytest.raises(AssertionError, match="comes from criteria 0.1.0, not criteria-other"):
        registered_plugin("optimizer", "adamw", distribution="criteria-other")
    with pytest.raises(AssertionError, match="is not registered: no installed distribution registers it"):
        registered_plugin("optimizer", "no_such_optimizer")
