"""Every built-in plugin's real ``build()``, exercised on tiny models and in-memory studies.

Plugins come from the real registry (entry points, exactly as the CLI loads them), and the tests
are parametrized over the names it holds per kind, so a newly added built-in is covered
automatically by the generic tests of its kind. Tests that check the behaviour of one named
plugin (the cosine floor, focal loss with gamma 0, ...) name it explicitly.

Everything runs on CPU with tiny models and finishes in seconds.
"""

from __future__ import annotations

import copy
import math
import typing
from typing import Any

import pytest
from builtin_plugins import BUILTINS, make
from criteria import TrainingPlan

pytestmark = [
    # third-party deprecations triggered by importing/using torch, transformers and peft
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

# --- the registry, loaded once at import so names can parametrize the tests ---------------

REGISTRY = BUILTINS
BUILTIN_DISTRIBUTION = "criteria"


def builtin_names(kind: str) -> list[str]:
    return [name for name, info in REGISTRY.plugins(kind).items() if info.distribution == BUILTIN_DISTRIBUTION]


def field_bounds(plugin_cls: type, field: str) -> tuple[float, float]:
    """The (ge, le) bounds a config field declares (+-inf where it declares none)."""
    low, high = -math.inf, math.inf
    for item in plugin_cls.Config.model_fields[field].metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else low
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
    return low, high


@pytest.fixture(autouse=True)
def _seeded():
    import torch

    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _quiet_optuna():
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(previous)


def test_registry_has_every_builtin_kind_and_nothing_broken():
    assert [b for b in REGISTRY.broken if b.distribution == BUILTIN_DISTRIBUTION] == []
    expected = {
        "optimizer": {"adamw", "adamw_8bit", "lamb", "lion", "sgd"},
        "scheduler": {"linear", "cosine", "constant"},
        "peft": {"none", "lora"},
        "head": {"linear"},
        "loss": {"cross_entropy", "focal"},
        "pruner": {"none", "median", "hyperband"},
        "sampler": {"tpe", "random"},
        "backend": {"cpu", "cuda"},
    }
    for kind, names in expected.items():
        assert names <= set(builtin_names(kind)), kind


# --- optimizers ----------------------------------------------------------------------------

# A learning rate large enough to see progress in ten steps (the defaults suit fine-tuning a
# pretrained encoder, not a 5-parameter regression): at least TEST_LR, clamped into the bounds
# each Config declares for ``lr``.
TEST_LR = 1e-2


def _optimizer_lr(name: str) -> float:
    cls = REGISTRY.get("optimizer", name).cls
    low, high = field_bounds(cls, "lr")
    return min(max(cls.Config().lr, TEST_LR, low), high)


def _regression_problem():
    import torch

    x = torch.randn(64, 4)
    y = x @ torch.tensor([[0.5], [-0.5], [0.25], [0.75]]) + 0.2
    return x, y


@pytest.mark.parametrize("name", builtin_names("optimizer"))
def test_optimizer_scales_group_lr_and_reduces_regression_loss(name):
    import torch

    lr = _optimizer_lr(name)
    plugin = make("optimizer", name, lr=lr)
    model = torch.nn.Linear(4, 1)
    optimizer = plugin.build([
        {"params": [model.weight], "lr_scale": 1.0},
        {"params": [model.bias], "lr_scale": 10.0},
    ])

    assert isinstance(optimizer, torch.optim.Optimizer)
    assert len(optimizer.param_groups) == 2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr * 1.0)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(lr * 10.0)

    x, y = _regression_problem()
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    final = torch.nn.functional.mse_loss(model(x), y).item()

    assert all(math.isfinite(v) for v in losses + [final])
    assert final < 0.95 * losses[0], f"{name}: loss {losses[0]:.4f} -> {final:.4f} ({losses})"
    for old, new in zip(before, model.parameters()):
        assert not torch.equal(old, new.detach()), f"{name} left a parameter unchanged"


# --- schedulers ----------------------------------------------------------------------------

TOTAL_STEPS, WARMUP_STEPS, PEAK_LR = 10, 2, 0.1
PLAN = TrainingPlan(total_steps=TOTAL_STEPS)


def _scheduled_lrs(name: str, **config: Any) -> tuple[list[float], list[float]]:
    """The lr of group 0 before each of TOTAL_STEPS optimizer steps and after the last one; and
    the ratio of group 1 to group 0 at each of those points."""
    import torch

    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": [params[0]], "lr": PEAK_LR}, {"params": [params[1]], "lr": 10 * PEAK_LR}])
    scheduler = make("scheduler", name, **config).build(optimizer, TrainingPlan(TOTAL_STEPS, WARMUP_STEPS))
    assert callable(getattr(scheduler, "step", None))
    lrs, ratios = [], []
    for step in range(TOTAL_STEPS + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        ratios.append(optimizer.param_groups[1]["lr"] / lrs[-1] if lrs[-1] else 10.0)
        if step < TOTAL_STEPS:
            optimizer.step()
            scheduler.step()
    return lrs, ratios


# Schedules with another shape (flat, restarts, one-cycle, plateau) are checked one by one in
# tests/test_catalog_optimizers.py.
NOT_WARMUP_THEN_DECAY = {"constant", "cosine_with_restarts", "one_cycle", "reduce_on_plateau"}


@pytest.mark.parametrize("name", builtin_names("scheduler"))
def test_every_scheduler_stays_within_the_peak_and_keeps_group_ratios(name):
    lrs, ratios = _scheduled_lrs(name)
    assert all(0.0 <= lr <= PEAK_LR * (1 + 1e-9) for lr in lrs), lrs
    assert ratios == pytest.approx([10.0] * len(ratios))


@pytest.mark.parametrize("name", sorted(set(builtin_names("scheduler")) - NOT_WARMUP_THEN_DECAY))
def test_scheduler_warms_up_from_zero_to_peak_and_keeps_group_ratios(name):
    lrs, ratios = _scheduled_lrs(name)
    assert lrs[0] == pytest.approx(0.0, abs=1e-12)
    assert 0.0 < lrs[1] < PEAK_LR  # still warming up
    assert lrs[WARMUP_STEPS] == pytest.approx(PEAK_LR)
    assert max(lrs) == pytest.approx(PEAK_LR)
    after_warmup = lrs[WARMUP_STEPS:]
    assert all(a >= b - 1e-12 for a, b in zip(after_warmup, after_warmup[1:])), f"{name} rises after warmup: {lrs}"
    assert ratios == pytest.approx([10.0] * len(ratios))


def test_linear_scheduler_decays_to_zero():
    lrs, _ = _scheduled_lrs("linear")
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)
    # linear: halfway through the decay, half the peak
    assert lrs[WARMUP_STEPS + (TOTAL_STEPS - WARMUP_STEPS) // 2] == pytest.approx(PEAK_LR / 2)


def test_cosine_scheduler_decays_to_its_min_lr_ratio():
    lrs, _ = _scheduled_lrs("cosine", min_lr_ratio=0.1)
    assert lrs[-1] == pytest.approx(0.1 * PEAK_LR)
    assert min(lrs[WARMUP_STEPS:]) == pytest.approx(0.1 * PEAK_LR)
    # halfway through the cosine: midway between peak and floor
    assert lrs[WARMUP_STEPS + (TOTAL_STEPS - WARMUP_STEPS) // 2] == pytest.approx(0.55 * PEAK_LR)


def test_cosine_scheduler_default_floor_is_zero():
    lrs, _ = _scheduled_lrs("cosine")
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)


def test_constant_scheduler_stays_at_peak_after_warmup():
    lrs, _ = _scheduled_lrs("constant")
    assert lrs[WARMUP_STEPS:] == pytest.approx([PEAK_LR] * (TOTAL_STEPS - WARMUP_STEPS + 1))


# --- PEFT ----------------------------------------------------------------------------------


def _tiny_encoder(family: str):
    import torch
    import transformers

    torch.manual_seed(0)
    sizes = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    if family == "bert":
        return transformers.BertModel(transformers.BertConfig(**sizes))
    return transformers.DebertaV2Model(transformers.DebertaV2Config(**sizes))


ENCODERS = ["bert", "deberta_v2"]


def _encoder_inputs():
    import torch

    input_ids = torch.randint(0, 100, (2, 6))
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _count(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", ENCODERS)
@pytest.mark.parametrize("name", builtin_names("peft"))
def test_peft_wrapped_encoder_runs_forward_and_backward(name, family):
    model = make("peft", name).build(_tiny_encoder(family), PLAN)
    out = model(**_encoder_inputs()).last_hidden_state
    assert out.shape[0] == 2 and out.shape[1] >= 6 and out.shape[2] == 32  # prompts add positions
    out.sum().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


@pytest.mark.parametrize("family", ENCODERS)
def test_peft_none_leaves_every_parameter_trainable(family):
    model = _tiny_encoder(family)
    built = make("peft", "none").build(model, PLAN)
    trainable, total = _count(built)
    assert trainable == total == sum(p.numel() for p in model.parameters())


# LoRA-wrapped linear layers per encoder layer, for each `targets` value
LORA_LAYERS_PER_ENCODER_LAYER = {"query_value": 2, "attention": 4, "attention_ffn": 6}
LORA_TARGETS = list(typing.get_args(REGISTRY.get("peft", "lora").cls.Config.model_fields["targets"].annotation))


def _lora_wrapped(model) -> set[str]:
    """Names (relative to the base model) of the modules that carry LoRA adapters."""
    prefix = "base_model.model."
    return {
        name.removeprefix(prefix) for name, module in model.named_modules()
        if hasattr(module, "lora_A") and len(getattr(module, "lora_A", {})) > 0
    }


@pytest.mark.parametrize("family", ENCODERS)
@pytest.mark.parametrize("targets", LORA_TARGETS)
def test_lora_trains_only_adapters_on_the_targeted_layers(targets, family):
    import torch

    base = _tiny_encoder(family).eval()
    reference = copy.deepcopy(base)
    model = make("peft", "lora", targets=targets, r=2, alpha=4, dropout=0.0).build(base, PLAN)

    trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable_names and all("lora_" in n for n in trainable_names), trainable_names
    trainable, total = _count(model)
    assert 0 < trainable < 0.1 * total, (trainable, total)

    wrapped = _lora_wrapped(model)
    assert wrapped and all(isinstance(reference.get_submodule(n), torch.nn.Linear) for n in wrapped)
    if targets in LORA_LAYERS_PER_ENCODER_LAYER:
        assert len(wrapped) == 2 * LORA_LAYERS_PER_ENCODER_LAYER[targets], sorted(wrapped)
        assert all(".layer." in n for n in wrapped), sorted(wrapped)
    else:  # all_linear: at least every attention and feed-forward layer
        assert len(wrapped) >= 2 * LORA_LAYERS_PER_ENCODER_LAYER["attention_ffn"], sorted(wrapped)
    # each adapter has rank r: A is (r, in), B is (out, r)
    for name in wrapped:
        linear = reference.get_submodule(name)
        expected = 2 * (linear.in_features + linear.out_features)
        adapter = sum(p.numel() for n, p in model.named_parameters()
                      if n.startswith(f"base_model.model.{name}.lora_"))
        assert adapter == expected, name

    inputs = _encoder_inputs()
    out = model(**inputs).last_hidden_state
    # LoRA's B starts at zero: the wrapped model computes exactly what the base model did
    with torch.no_grad():
        torch.testing.assert_close(out, reference(**inputs).last_hidden_state)

    # backward from every output (BERT's pooler too: all_linear puts an adapter on it)
    outputs = model(**inputs)
    sum(t.pow(2).mean() for t in outputs.to_tuple() if isinstance(t, torch.Tensor)).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, n
        else:
            assert p.grad is None, n
    lora_b_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b_grads and all(g.abs().sum() > 0 for g in lora_b_grads)


def test_lora_targets_nest_query_value_in_attention_in_attention_ffn():
    wrapped = {
        targets: _lora_wrapped(make("peft", "lora", targets=targets).build(_tiny_encoder("bert"), PLAN))
        for targets in ("query_value", "attention", "attention_ffn", "all_linear")
    }
    assert wrapped["query_value"] < wrapped["attention"] < wrapped["attention_ffn"] <= wrapped["all_linear"]
    assert all(n.endswith(("query", "value")) for n in wrapped["query_value"])


# --- heads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", builtin_names("head"))
def test_head_maps_hidden_states_to_logits_and_passes_gradients(name):
    import torch

    head = make("head", name).build(hidden_size=32, num_labels=2)
    assert isinstance(head, torch.nn.Module)
    hidden = torch.randn(3, 5, 32, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    logits = head(hidden, mask)
    assert logits.shape == (3, 2)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0
    params = list(head.parameters())
    assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_linear_head_reads_the_first_token_and_applies_dropout_in_training():
    import torch

    head = make("head", "linear", dropout=0.5).build(hidden_size=32, num_labels=2).eval()
    hidden = torch.randn(3, 5, 32)
    changed = hidden.clone()
    changed[:, 1:] = torch.randn(3, 4, 32)
    mask = torch.ones(3, 5, dtype=torch.long)
    torch.testing.assert_close(head(hidden, mask), head(changed, mask))
    head.train()
    assert not torch.equal(head(hidden, mask), head.eval()(hidden, mask))


# --- losses --------------------------------------------------------------------------------

CLASS_COUNTS = [90, 10]


@pytest.mark.parametrize("name", builtin_names("loss"))
def test_loss_is_a_finite_differentiable_scalar(name):
    import torch

    loss_fn = make("loss", name).build(CLASS_COUNTS)
    logits = torch.randn(8, 2, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    loss = loss_fn(logits, labels)
    assert loss.dim() == 0
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # a confident right answer costs less than a confident wrong one
    right = torch.nn.functional.one_hot(labels, 2).float() * 20 - 10
    assert loss_fn(right, labels) < loss_fn(-right, labels)


def test_cross_entropy_matches_torch():
    import torch

    logits, labels = torch.randn(8, 2), torch.randint(0, 2, (8,))
    loss = make("loss", "cross_entropy").build(CLASS_COUNTS)(logits, labels)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))
    smoothed = make("loss", "label_smoothing", smoothing=0.2).build(CLASS_COUNTS)(logits, labels)
    torch.testing.assert_close(smoothed, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2))


def test_focal_with_gamma_zero_and_no_alpha_is_cross_entropy():
    import torch

    logits, labels = torch.randn(16, 2), torch.randint(0, 2, (16,))
    loss = make("loss", "focal", gamma=0.0, alpha="none").build(CLASS_COUNTS)(logits, labels)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))


def test_focal_down_weights_easy_examples():
    import torch

    easy = torch.tensor([[3.0, 0.0]])
    label = torch.tensor([0])
    focal = make("loss", "focal", gamma=2.0, alpha="none").build(CLASS_COUNTS)(easy, label)
    ce = torch.nn.functional.cross_entropy(easy, label)
    p = torch.softmax(easy, -1)[0, 0]
    torch.testing.assert_close(focal, (1 - p) ** 2 * ce)
    assert focal < 0.01 * ce


def test_focal_inverse_frequency_alpha_weighs_the_rare_class_more():
    import torch

    loss_fn = make("loss", "focal", alpha="inverse_frequency").build(CLASS_COUNTS)
    unsure = torch.zeros(1, 2)  # the same prediction, so only the class weight differs
    common = loss_fn(unsure, torch.tensor([0]))
    rare = loss_fn(unsure, torch.tensor([1]))
    assert rare > common
    torch.testing.assert_close(rare / common, torch.tensor(90 / 10))
    # weights average 1 over the classes: alpha = total / (n_classes * count)
    unweighted = make("loss", "focal", alpha="none").build(CLASS_COUNTS)(unsure, torch.tensor([0]))
    torch.testing.assert_close(common, unweighted * 100 / (2 * 90))
    torch.testing.assert_close(rare, unweighted * 100 / (2 * 10))


# --- pruners -------------------------------------------------------------------------------

PRUNER_CONFIG = {
    "median": dict(n_startup_trials=2, n_warmup_steps=1),
    "hyperband": dict(min_resource=1, max_resource=8, reduction_factor=2),
}
N_STEPS, N_TRIALS = 8, 20


def _pruned_study(name: str):
    import optuna

    pruner = make("pruner", name, **PRUNER_CONFIG.get(name, {})).build(REGISTRY)
    assert isinstance(pruner, optuna.pruners.BasePruner)

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(1, N_STEPS + 1):
            trial.report(x * step, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x * N_STEPS

    # a fixed study name: Hyperband assigns trials to brackets by hashing it
    study = optuna.create_study(direction="maximize", pruner=pruner, study_name=f"test-{name}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=N_TRIALS)
    return study


def _by_state(study):
    from optuna.trial import TrialState

    pruned = [t.params["x"] for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t.params["x"] for t in study.trials if t.state == TrialState.COMPLETE]
    return pruned, complete


@pytest.mark.parametrize("name", builtin_names("pruner"))
def test_pruner_runs_a_study_to_the_end(name):
    study = _pruned_study(name)
    pruned, complete = _by_state(study)
    assert len(pruned) + len(complete) == N_TRIALS
    assert complete  # a pruner never prunes everything
    assert study.best_value == pytest.approx(max(complete) * N_STEPS)


@pytest.mark.parametrize("name", ["median", "hyperband"])
def test_pruner_stops_clearly_bad_trials(name):
    pruned, complete = _by_state(_pruned_study(name))
    assert pruned, f"{name} pruned nothing in {N_TRIALS} trials"
    # value = x * step, so the pruned trials are the ones with small x
    assert sum(pruned) / len(pruned) < sum(complete) / len(complete)
    assert min(pruned) < 0.5 < max(complete)


def test_hyperband_config_rejects_a_max_resource_below_min_resource():
    from pydantic import ValidationError

    cls = REGISTRY.get("pruner", "hyperband").cls
    for bad in (dict(max_resource=0), dict(min_resource=4, max_resource=2)):
        try:
            cls.Config(**bad)
        except ValidationError:
            continue
        raise AssertionError(f"HyperbandConfig accepted {bad}")


def test_none_pruner_never_prunes():
    pruned, complete = _by_state(_pruned_study("none"))
    assert pruned == [] and len(complete) == N_TRIALS


# --- samplers ------------------------------------------------------------------------------

SAMPLER_CLASS = {"tpe": "TPESampler", "random": "RandomSampler"}


def _quadratic_study(name: str, seed: int):
    import optuna

    sampler = make("sampler", name).build(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -2.0, 2.0) - 0.5) ** 2 + t.suggest_int("n", 0, 4), n_trials=10)
    return sampler, study


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("name", builtin_names("sampler"))
def test_sampler_runs_a_seeded_study_reproducibly(name):
    import optuna
    from optuna.trial import TrialState

    sampler, study = _quadratic_study(name, seed=0)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    if name in SAMPLER_CLASS:
        assert type(sampler) is getattr(optuna.samplers, SAMPLER_CLASS[name])
    assert len(study.trials) == 10 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(-2.0 <= t.params["x"] <= 2.0 and 0 <= t.params["n"] <= 4 for t in study.trials)
    assert study.best_value == min(t.value for t in study.trials)

    _, again = _quadratic_study(name, seed=0)
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    _, other = _quadratic_study(name, seed=1)
    assert [t.params for t in other.trials] != [t.params for t in study.trials]


# --- backends ------------------------------------------------------------------------------


@pytest.fixture
def _restore_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("_restore_threads")
@pytest.mark.parametrize("name", builtin_names("backend"))
def test_backend_builds_a_runtime(name):
    from criteria.engine.runtime import Runtime

    runtime = make("backend", name).build()
    assert isinstance(runtime, Runtime)
    assert runtime.device_type == name  # the built-in backends are named for their torch device type
    assert runtime.precision in ("fp32", "bf16", "fp16")


@pytest.mark.usefixtures("_restore_threads")
@pytest.mark.parametrize("precision, dtype", [("fp32", "float32"), ("bf16", "bfloat16")])
def test_cpu_runtime_trains_a_model_under_its_autocast(precision, dtype):
    import torch
    from criteria.engine.runtime import Runtime

    runtime = make("backend", "cpu", precision=precision).build()
    assert isinstance(runtime, Runtime)
    assert (runtime.device, runtime.precision, runtime.compile_mode) == ("cpu", precision, None)
    assert runtime.grad_scaler() is None

    model = runtime.prepare(torch.nn.Linear(8, 2))
    assert next(model.parameters()).device.type == "cpu"
    x = torch.randn(4, 8)
    with runtime.autocast():
        out = model(x)
    assert out.dtype == getattr(torch, dtype)
    loss = torch.nn.functional.cross_entropy(out.float(), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    for p in model.parameters():
        assert p.dtype == torch.float32  # autocast keeps fp32 master weights
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0


@pytest.mark.usefixtures("_restore_threads")
def test_cpu_backend_applies_threads_and_compile_options():
    import torch

    runtime = make("backend", "cpu", threads=1, compile=True, compile_mode="reduce-overhead").build()
    assert torch.get_num_threads() == 1
    assert runtime.compile_mode == "reduce-overhead"


def test_cpu_backend_rejects_fp16_with_the_reason():
    from pydantic import ValidationError

    cls = REGISTRY.get("backend", "cpu").cls
    with pytest.raises(ValidationError, match="20x"):
        cls.Config(precision="fp16")


def test_cuda_backend_availability_matches_torch():
    import torch

    availability = REGISTRY.get("backend", "cuda").availability()
    if torch.cuda.is_available():
        assert availability.ok
    else:
        assert not availability.ok and "CUDA" in availability.reason
