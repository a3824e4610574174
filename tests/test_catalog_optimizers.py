"""The optimizer and scheduler catalog: each optimizer trains a tiny BERT classifier, each
scheduler's learning-rate curve has its promised shape, and the engine runs the two that need
something beyond ``step()`` (a plateau scheduler fed by validation, Adafactor's own lr handling).

Optimizers are built through the registry (entry points) and skipped with their own availability
reason where a package is missing. Everything runs on CPU with the tiny models of tiny_models.py.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from builtin_plugins import BUILTINS, write_tiny_spec
from builtin_plugins import make as plugin
from criteria import TrainingPlan
from criteria.plugin.registry import get_registry

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    # per-criterion metrics on the small validation split of the end-to-end tests
    pytest.mark.filterwarnings("ignore:A single label was found:UserWarning"),
]

REGISTRY = BUILTINS

OPTIMIZERS = ["adamw", "adam", "adafactor", "radam", "lamb", "sgd", "sgd_momentum", "novograd", "adabelief",
              "lion", "adamw_8bit", "lion_8bit"]
SCHEDULERS = ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
              "exponential", "one_cycle", "reduce_on_plateau", "inverse_sqrt", "warmup_stable_decay"]


def test_the_whole_catalog_is_registered():
    assert set(OPTIMIZERS) <= set(REGISTRY.plugins("optimizer"))
    assert set(SCHEDULERS) <= set(REGISTRY.plugins("scheduler"))
    assert not [b for b in REGISTRY.broken if b.distribution == "criteria"]


# --- optimizers on a tiny BERT classifier ---------------------------------------------------

# The declared defaults suit fine-tuning a pretrained encoder for thousands of steps; a random
# tiny encoder on one batch shows progress within five steps at 10x that, each family from its own
# default (Lion's is below Adam's). Capped at 1e-2: SGD's steps are not normalised per parameter,
# and its default already is that large.
LR_FACTOR, MAX_LR, STEPS = 10, 1e-2, 5


@pytest.fixture(scope="module")
def tiny_classifier(tiny_bert):
    from criteria.engine.model import CriterionClassifier, load_encoder

    class ClsHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.classifier = torch.nn.Linear(32, 2)

        def forward(self, hidden, mask):
            return self.classifier(hidden[:, 0])

    torch.manual_seed(0)
    encoder = load_encoder(str(tiny_bert), hidden_dropout=0.0, attention_dropout=0.0)
    return CriterionClassifier(encoder, ClsHead())


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 5000, (8, 16), generator=generator)
    return input_ids, torch.ones_like(input_ids), torch.tensor([0, 1] * 4)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_trains_the_tiny_bert_classifier(name, tiny_classifier, batch):
    from criteria.engine.optimization import parameter_groups

    cls = REGISTRY.get("optimizer", name).cls
    opt_plugin = plugin("optimizer", name, lr=min(cls.Config().lr * LR_FACTOR, MAX_LR))
    torch.manual_seed(0)
    model = copy.deepcopy(tiny_classifier)
    # The engine's own grouping: layer-wise decay, no decay on biases and norms.
    groups = parameter_groups(model, head_lr_multiplier=1.0, layerwise_lr_decay=0.9,
                              weight_decay=opt_plugin.config.weight_decay)
    optimizer = opt_plugin.build(groups)
    assert isinstance(optimizer, torch.optim.Optimizer)
    lr = opt_plugin.config.lr
    assert sorted({round(g["lr"] / lr, 6) for g in optimizer.param_groups}) == sorted(
        {round(g["lr_scale"], 6) for g in groups})

    input_ids, mask, labels = batch
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = []
    for _ in range(STEPS):
        loss = torch.nn.functional.cross_entropy(model(input_ids, mask), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    final = torch.nn.functional.cross_entropy(model(input_ids, mask), labels).item()

    assert all(math.isfinite(v) for v in [*losses, final])
    assert final < 0.99 * losses[0], f"{name}: loss {losses} -> {final}"
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert {"head.classifier.weight", "encoder.encoder.layer.0.attention.self.query.weight"} <= set(changed)


def test_adamw_runs_fused_on_cuda_and_foreach_elsewhere():
    from criteria_builtins.optimizers import torch_kernel

    def fake(cuda: bool, floating: bool = True):
        return SimpleNamespace(is_cuda=cuda, is_floating_point=lambda: floating)

    assert torch_kernel([{"params": [fake(True), fake(True)]}]) == {"fused": True}
    assert torch_kernel([{"params": [fake(True)]}, {"params": [fake(False)]}]) == {"foreach": True}
    assert torch_kernel([{"params": [fake(True, floating=False)]}]) == {"foreach": True}
    assert torch_kernel([{"params": [fake(True)]}], fused=False) == {"foreach": True}

    # the real optimizer on this machine's CPU tensors: foreach, not the per-parameter loop
    layer = torch.nn.Linear(4, 2)
    optimizer = plugin("optimizer", "adamw").build([{"params": list(layer.parameters())}])
    assert optimizer.defaults["foreach"] is True and not optimizer.defaults["fused"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_adamw_is_fused_on_cuda_parameters():
    layer = torch.nn.Linear(4, 2).cuda()
    optimizer = plugin("optimizer", "adamw", lr=1e-2).build([{"params": list(layer.parameters())}])
    assert optimizer.defaults["fused"] is True
    before = layer.weight.detach().clone()
    layer(torch.randn(8, 4, device="cuda")).pow(2).mean().backward()
    optimizer.step()
    assert not torch.equal(before, layer.weight.detach())


def test_adafactor_honours_the_given_learning_rate():
    # relative_step=False and scale_parameter=False: the first update of a weight is lr times
    # its RMS-normalised gradient (clipped at 1), so its RMS is exactly lr.
    weight = torch.nn.Parameter(torch.zeros(16, 16))
    optimizer = plugin("optimizer", "adafactor", lr=1e-3, weight_decay=0.0).build([{"params": [weight]}])
    weight.grad = torch.randn(16, 16)
    optimizer.step()
    assert weight.detach().pow(2).mean().sqrt().item() == pytest.approx(1e-3, rel=1e-3)


def test_sgd_momentum_nesterov_differs_from_heavy_ball():
    def trained(nesterov: bool) -> torch.Tensor:
        weight = torch.nn.Parameter(torch.ones(3))
        sgd = plugin("optimizer", "sgd_momentum", lr=0.1, momentum=0.9, nesterov=nesterov)
        opt = sgd.build([{"params": [weight]}])
        for _ in range(3):
            weight.pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
        assert opt.param_groups[0]["nesterov"] is nesterov and opt.param_groups[0]["momentum"] == 0.9
        return weight.detach()

    assert not torch.allclose(trained(True), trained(False))
    plain = plugin("optimizer", "sgd").build([{"params": [torch.nn.Parameter(torch.ones(1))]}])
    assert plain.param_groups[0]["momentum"] == 0


def test_adabelief_builds_silently(capsys):
    plugin("optimizer", "adabelief").build([{"params": [torch.nn.Parameter(torch.ones(2))]}])
    assert capsys.readouterr().out == ""


# --- scheduler curves ------------------------------------------------------------------------

TOTAL, WARMUP, PER_EPOCH, PEAK = 20, 4, 5, 0.1


def lr_curve(name: str, plan: TrainingPlan | None = None, validations: dict[int, float] | None = None,
             **config: Any) -> tuple[list[float], list[float]]:
    """The lr of group 0 before each optimizer step and after the last, and the ratio of group 1
    (built at 10x the lr) to group 0 at those points (where group 0's is not zero).
    ``validations`` maps an optimizer step to a metric value given to ``on_validation`` after it
    (an epoch's end)."""
    plan = plan or TrainingPlan(total_steps=TOTAL, warmup_steps=WARMUP, steps_per_epoch=PER_EPOCH)
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    optimizer = torch.optim.SGD([{"params": [params[0]], "lr": PEAK},
                                 {"params": [params[1]], "lr": 10 * PEAK}])
    sched_plugin = plugin("scheduler", name, **config)
    scheduler = sched_plugin.build(optimizer, plan)
    lrs, ratios = [], []
    for step in range(plan.total_steps + 1):
        lrs.append(optimizer.param_groups[0]["lr"])
        if lrs[-1] > 0:
            ratios.append(optimizer.param_groups[1]["lr"] / lrs[-1])
        if step < plan.total_steps:
            optimizer.step()
            scheduler.step()
            if validations and step + 1 in validations:
                sched_plugin.on_validation(scheduler, validations[step + 1])
    return lrs, ratios


def rises_linearly_to_peak(lrs: list[float], warmup: int = WARMUP) -> bool:
    return lrs[:warmup + 1] == pytest.approx([PEAK * s / warmup for s in range(warmup + 1)])


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_keeps_group_ratios_and_stays_within_the_peak(name):
    lrs, ratios = lr_curve(name)
    assert ratios == pytest.approx([10.0] * len(ratios))
    assert all(math.isfinite(lr) and 0.0 <= lr <= PEAK * (1 + 1e-9) for lr in lrs)


def test_constant_is_no_schedule_at_all():
    lrs, _ = lr_curve("constant")
    assert lrs == pytest.approx([PEAK] * (TOTAL + 1))


def test_constant_with_warmup_warms_up_then_stays_flat():
    lrs, _ = lr_curve("constant_with_warmup")
    assert rises_linearly_to_peak(lrs)
    assert lrs[WARMUP:] == pytest.approx([PEAK] * (TOTAL - WARMUP + 1))


def test_linear_and_cosine_warm_up_then_decay_to_zero():
    for name in ("linear", "cosine"):
        lrs, _ = lr_curve(name)
        assert rises_linearly_to_peak(lrs) and lrs[-1] == pytest.approx(0.0, abs=1e-12), name
        assert lrs[WARMUP + (TOTAL - WARMUP) // 2] == pytest.approx(PEAK / 2), name  # both halve at mid-decay
    linear, _ = lr_curve("linear")
    cosine, _ = lr_curve("cosine")
    assert cosine[WARMUP + 2] > linear[WARMUP + 2] and cosine[TOTAL - 2] < linear[TOTAL - 2]


@pytest.mark.parametrize("cycles", [1, 2, 4])
def test_cosine_with_restarts_restarts_at_the_peak(cycles):
    lrs, _ = lr_curve("cosine_with_restarts", cycles=cycles)
    assert rises_linearly_to_peak(lrs)
    after = lrs[WARMUP:TOTAL]
    restarts = [i for i in range(1, len(after)) if after[i] > after[i - 1]]
    assert len(restarts) == cycles - 1
    cycle = (TOTAL - WARMUP) // cycles
    assert restarts == [k * cycle for k in range(1, cycles)]
    assert all(after[i] == pytest.approx(PEAK) for i in restarts)
    assert all(after[i - 1] < 0.2 * PEAK for i in restarts)  # each cycle ends near zero


def test_polynomial_follows_its_power_to_the_floor():
    lrs, _ = lr_curve("polynomial", power=2.0, lr_end_ratio=0.1)
    assert rises_linearly_to_peak(lrs)
    for step in range(WARMUP, TOTAL + 1):
        remaining = 1 - (step - WARMUP) / (TOTAL - WARMUP)
        assert lrs[step] == pytest.approx(PEAK * (0.9 * remaining ** 2 + 0.1)), step
    assert lrs[-1] == pytest.approx(0.1 * PEAK)


def test_exponential_decays_once_per_epoch_after_warmup():
    lrs, _ = lr_curve("exponential", gamma=0.9)
    assert rises_linearly_to_peak(lrs)
    for step in range(WARMUP, TOTAL + 1):
        assert lrs[step] == pytest.approx(PEAK * 0.9 ** ((step - WARMUP) // PER_EPOCH)), step
    # flat within an epoch's worth of steps, then one gamma: a staircase, not a per-step decay
    assert lrs[WARMUP:WARMUP + PER_EPOCH] == pytest.approx([PEAK] * PER_EPOCH)
    assert lrs[WARMUP + PER_EPOCH] == pytest.approx(0.9 * PEAK)

    no_warmup, _ = lr_curve("exponential", TrainingPlan(total_steps=15, steps_per_epoch=5), gamma=0.9)
    assert no_warmup == pytest.approx([PEAK] * 5 + [0.9 * PEAK] * 5 + [0.81 * PEAK] * 5 + [0.729 * PEAK])


def test_one_cycle_rises_to_each_groups_lr_then_anneals_far_below():
    lrs, ratios = lr_curve("one_cycle", pct_start=0.25)
    peak_at = max(range(len(lrs)), key=lrs.__getitem__)
    assert lrs[0] == pytest.approx(PEAK / 25)
    assert lrs[peak_at] == pytest.approx(PEAK) and peak_at == round(0.25 * TOTAL) - 1
    assert all(a < b for a, b in zip(lrs[:peak_at], lrs[1:peak_at + 1]))
    assert all(a >= b for a, b in zip(lrs[peak_at:TOTAL], lrs[peak_at + 1:TOTAL]))
    assert lrs[TOTAL - 1] < PEAK / 1000


@pytest.mark.parametrize("direction, worse", [("maximize", [0.5, 0.4, 0.45, 0.3, 0.2]),
                                              ("minimize", [0.5, 0.6, 0.55, 0.7, 0.8])])
def test_reduce_on_plateau_lowers_lr_after_patience_epochs_without_improvement(direction, worse):
    plan = TrainingPlan(total_steps=6 * PER_EPOCH, warmup_steps=WARMUP, steps_per_epoch=PER_EPOCH,
                        direction=direction)
    # epoch 1: baseline; epochs 2-3: no improvement, tolerated (patience 2); epoch 4: lr x 0.5;
    # epoch 5 is the first of a new wait.
    values = {PER_EPOCH * (epoch + 1): value for epoch, value in enumerate(worse)}
    lrs, ratios = lr_curve("reduce_on_plateau", plan, values, patience=2, factor=0.5)
    assert rises_linearly_to_peak(lrs)
    epoch_lr = [lrs[PER_EPOCH * epoch] for epoch in range(1, 7)]  # lr after each epoch's validation
    assert epoch_lr == pytest.approx([PEAK, PEAK, PEAK, PEAK / 2, PEAK / 2, PEAK / 2])
    assert ratios == pytest.approx([10.0] * len(ratios))

    improving = {PER_EPOCH * e: (e if direction == "maximize" else -e) for e in range(1, 6)}
    lrs, _ = lr_curve("reduce_on_plateau", plan, improving, patience=2, factor=0.5)
    assert lrs[WARMUP:] == pytest.approx([PEAK] * (len(lrs) - WARMUP))


def test_reduce_on_plateau_ignores_validations_during_warmup():
    plan = TrainingPlan(total_steps=12, warmup_steps=8, steps_per_epoch=2, direction="maximize")
    # four epochs end inside the warmup with a falling metric: not a plateau
    lrs, _ = lr_curve("reduce_on_plateau", plan, {2: 0.9, 4: 0.8, 6: 0.7, 8: 0.6}, patience=0, factor=0.5)
    assert rises_linearly_to_peak(lrs, warmup=8) and lrs[8:] == pytest.approx([PEAK] * 5)


def test_inverse_sqrt_decays_with_the_warmup_timescale_or_an_epoch():
    lrs, _ = lr_curve("inverse_sqrt")
    assert rises_linearly_to_peak(lrs)
    assert lrs[WARMUP:] == pytest.approx([PEAK / math.sqrt(s / WARMUP) for s in range(WARMUP, TOTAL + 1)])
    # without warmup the timescale is one epoch: half the peak after three epochs
    no_warmup, _ = lr_curve("inverse_sqrt", TrainingPlan(total_steps=20, steps_per_epoch=5))
    assert no_warmup[0] == pytest.approx(PEAK) and no_warmup[15] == pytest.approx(PEAK / 2)


def test_warmup_stable_decay_holds_the_peak_then_decays_at_the_end():
    lrs, _ = lr_curve("warmup_stable_decay", decay_ratio=0.25)
    decay_start = TOTAL - round(0.25 * TOTAL)
    assert rises_linearly_to_peak(lrs)
    assert lrs[WARMUP:decay_start + 1] == pytest.approx([PEAK] * (decay_start - WARMUP + 1))
    decay = lrs[decay_start:]
    assert all(a > b for a, b in zip(decay, decay[1:])) and decay[-1] == pytest.approx(0.0, abs=1e-12)


# --- the engine, end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tiny_bert):
    """The embedded corpus encoded for the tiny model, and a small train/validation split of it:
    every 6th training and 4th validation pair (a few optimizer steps, both labels on each side)."""
    from criteria.data.loaders import embedded_corpus
    from criteria.data.splits import holdout, test_split
    from criteria.data.tokens import encode_pairs
    from criteria.engine.model import load_tokenizer

    corpus = embedded_corpus()
    tokenizer = load_tokenizer(str(tiny_bert))
    rest, _ = test_split(corpus, 0.2, 0)
    split = holdout(corpus, rest, 0.25, 0)
    return SimpleNamespace(corpus=corpus, tokenizer=tokenizer, encoded=encode_pairs(tokenizer, corpus, 64),
                           train=split.train[::6], validation=split.validation[::4])


def _job(tmp_path: Path, model: Path, data: SimpleNamespace, body: str):
    from criteria.engine.job import TrainingJob
    from criteria.spec.load import load_spec

    spec = load_spec(write_tiny_spec(tmp_path, model, body, name="catalog", train="warmup_ratio = 0.1"),
                     get_registry())
    return TrainingJob(corpus=data.corpus, encoded=data.encoded, train_indices=data.train,
                       validation_indices=data.validation, config=spec.space.default(),
                       model_name=spec.model.name, pad_token_id=data.tokenizer.pad_token_id)


def test_fit_drives_reduce_on_plateau_with_the_validation_metric(tiny_bert, data, tmp_path, monkeypatch):
    from criteria.engine.fit import fit
    from criteria_builtins.schedulers import WarmupThenPlateau

    seen: list[tuple[float, float]] = []
    original = WarmupThenPlateau.on_validation

    def spy(self, value):
        original(self, value)
        seen.append((value, self.plateau.best))

    monkeypatch.setattr(WarmupThenPlateau, "on_validation", spy)
    job = _job(tmp_path, tiny_bert, data, '[optimizer]\nuse = "adamw"\n'
                                          '[scheduler]\nuse = "reduce_on_plateau"\n'
                                          '[scheduler.reduce_on_plateau]\npatience = 2\n')
    result = fit(job)
    assert len(result.history) == 1 and math.isfinite(result.history[0].train_loss)
    assert {job.corpus.labels[i] for i in job.validation_indices} == {0, 1}
    # the epoch's objective reached the plateau logic, which took it as its first best (mode max)
    assert seen == [(result.history[0].value, result.history[0].value)]


def test_fit_trains_with_adafactor(tiny_bert, data, tmp_path):
    from criteria.engine.fit import fit
    from criteria.engine.model import load_encoder

    job = _job(tmp_path, tiny_bert, data, '[optimizer]\nuse = "adafactor"\n'
                                          '[optimizer.adafactor]\nlr = 1e-3\n'
                                          '[scheduler]\nuse = "linear"\n')
    assert job.config.plugins["optimizer"].name == "adafactor"
    result = fit(job)
    assert len(result.history) == 1 and math.isfinite(result.history[0].train_loss)
    initial = load_encoder(str(tiny_bert), hidden_dropout=0.0, attention_dropout=0.0).state_dict()
    trained = result.model.encoder.state_dict()
    name = "encoder.layer.1.attention.self.query.weight"
    assert not torch.equal(initial[name], trained[name])
