"""Testing a plugin the way criteria tests its own: the contract, then a real run on a tiny model.

In a plugin package's tests::

    from criteria.testing import check_plugin, exercise_plugin, registered_plugin

    from my_package import MyOptimizer

    def test_it_is_registered_through_its_entry_point():
        registered_plugin("optimizer", "my_sgd", distribution="criteria-my-sgd")

    def test_it_honours_the_contract():
        check_plugin(MyOptimizer)

    def test_it_trains():
        exercise_plugin(MyOptimizer, lr=1e-2)

:func:`check_plugin` raises an ``AssertionError`` listing every problem: what the registry would
refuse (name, summary, a ``Config`` whose defaults validate and whose search ranges lie inside its
bounds, the kind's own rules such as an optimizer's float ``lr``, ``requires_plugins`` /
``excludes_plugins``), a heavy import (torch, transformers, ...) at the module's top level, and an
``available()`` that raises or answers "no" without a readable reason.

:func:`exercise_plugin` builds the plugin and runs what it built for real, on CPU, in a second or
two: an optimizer's step on a tiny random BERT classifier (through the engine's parameter groups
and the plugin's training/evaluation hooks), a scheduler's steps, a PEFT method wrapping that BERT
and training a step, a head's forward and backward, a loss's value and gradient, an augmenter
rewriting example posts (with a tiny masked language model's resources), a masking strategy's
choices and two steps of the pretraining stage with them, a pruner and a sampler driving a toy
Optuna study, a backend's runtime running a layer. It raises
:class:`PluginUnavailable` (with the plugin's reason) where the plugin cannot run on this machine.

This module is public and imports from every layer of the package: it tests plugins the way the
engine and a study use them. Importing it loads nothing heavy; running a check does.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
from typing import Any, Callable

from criteria.plugin.base import Plugin
from criteria.plugin.kinds import TrainingPlan
from criteria.plugin.registry import PluginInfo, Registry, normalize_distribution

__all__ = ["HEAVY_MODULES", "PluginUnavailable", "check_plugin", "contract_problems", "exercise_plugin",
           "heavy_imports", "registered_plugin", "tiny_batch", "tiny_classifier"]

#: What a plugin module must not import at its top level (listing and --help stay fast).
HEAVY_MODULES = ("torch", "transformers", "peft", "bitsandbytes", "optuna", "mlflow")


class PluginUnavailable(Exception):
    """The plugin cannot run on this machine; the message is its own reason (skip the test)."""


# --- the contract ----------------------------------------------------------------------------------


def contract_problems(plugin_cls: Any, *, check_imports: bool = True) -> list[str]:
    """Every way ``plugin_cls`` breaks its kind's contract (empty: none). See :func:`check_plugin`."""
    problems = Registry.contract_problems(plugin_cls)
    if problems:
        return problems  # the class is not a usable plugin: the checks below would only repeat it
    if check_imports:
        heavy = heavy_imports(plugin_cls.__module__)
        if heavy:
            problems.append(f"importing {plugin_cls.__module__} imports {', '.join(heavy)}: "
                            "import them inside build() so that listing plugins stays fast")
    try:
        availability = plugin_cls.available()
    except Exception as exc:
        problems.append(f"available() raised {type(exc).__name__}: {exc}; it must answer, not raise")
    else:
        reason = availability.reason.strip()
        if not availability.ok and not reason:
            problems.append("available() says no without a reason; say what is missing and how to get it")
        elif "\n" in reason:
            problems.append(f"available()'s reason must be one line, not {availability.reason!r}")
    return problems


def check_plugin(plugin_cls: Any, *, check_imports: bool = True) -> None:
    """Assert that ``plugin_cls`` honours its kind's contract; the error lists every problem.

    ``check_imports=False`` skips importing the plugin's module in a fresh interpreter (for a class
    defined where no other process can import it)."""
    problems = contract_problems(plugin_cls, check_imports=check_imports)
    if problems:
        name = getattr(plugin_cls, "__qualname__", plugin_cls)
        raise AssertionError(f"{name} breaks the plugin contract:\n- " + "\n- ".join(problems))


@functools.lru_cache(maxsize=None)
def heavy_imports(module: str) -> tuple[str, ...]:
    """The heavy packages importing ``module`` loads, in a fresh interpreter with this one's path."""
    code = ("import importlib, json, sys; importlib.import_module(sys.argv[1]); "
            f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise AssertionError(f"cannot import {module} in a fresh interpreter:\n{out.stderr.strip()[-2000:]}\n"
                             "(pass check_imports=False for a class defined in a test)")
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def registered_plugin(kind: str, name: str, *, distribution: str | None = None) -> PluginInfo:
    """The plugin as the installed entry points register it (what `criteria plugins list` shows).
    Fails with the registry's reason when it is broken, missing or from another distribution."""
    registry = Registry.from_entry_points()
    plugins = registry.plugins(kind)

    def concerns_it(broken: Any) -> bool:  # its distribution's failures, or failures under its name
        if distribution:
            return normalize_distribution(broken.distribution) == normalize_distribution(distribution)
        return (broken.kind, broken.name) == (kind, name)

    broken = [b for b in registry.broken if concerns_it(b)]
    if name not in plugins:
        why = "; ".join(f"{b.source} {b.what}: {b.reason}" for b in broken) or (
            "no installed distribution registers it; is the package installed (pip install -e .) and its "
            "entry point in the `criteria` group?")
        raise AssertionError(f"{kind} {name!r} is not registered: {why}")
    info = plugins[name]
    if distribution and normalize_distribution(info.distribution) != normalize_distribution(distribution):
        raise AssertionError(f"{kind} {name!r} comes from {info.source}, not {distribution}")
    if broken:
        raise AssertionError("the distribution also has broken plugins: "
                             + "; ".join(f"{b.what}: {b.reason}" for b in broken))
    return info


# --- a real run ------------------------------------------------------------------------------------


def exercise_plugin(plugin: type[Plugin] | Plugin, **config: Any) -> Any:
    """Build ``plugin`` (a class, made with ``config``; or an instance) and run what it built for
    real on a tiny model or a toy study; returns what ``build`` returned. Raises
    ``AssertionError`` when it misbehaves, :class:`PluginUnavailable` where it cannot run here."""
    instance = plugin(**config) if isinstance(plugin, type) else plugin
    availability = type(instance).available()
    if not availability:
        raise PluginUnavailable(f"{instance.kind} {instance.name!r}: {availability.reason}")
    exercise = _EXERCISES.get(instance.kind)
    if exercise is None:
        raise NotImplementedError(f"criteria.testing cannot run a {instance.kind!r} plugin yet; "
                                  f"it runs {', '.join(_EXERCISES)}")
    return exercise(instance)


def tiny_classifier(seed: int = 0) -> Any:
    """A randomly initialised 2-layer BERT (hidden size 32, vocabulary 100) under a linear head on
    its first token: a :class:`~criteria.engine.model.CriterionClassifier` built in milliseconds."""
    import torch
    import transformers

    from criteria.engine.model import CriterionClassifier

    torch.manual_seed(seed)
    encoder = transformers.BertModel(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    ))

    class FirstToken(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(32, 2)

        def forward(self, hidden: Any, mask: Any) -> Any:
            return self.linear(hidden[:, 0])

    return CriterionClassifier(encoder, FirstToken())


def tiny_batch(size: int = 8, length: int = 12, seed: int = 0) -> tuple[Any, Any, Any]:
    """``(input_ids, attention_mask, labels)`` for :func:`tiny_classifier`, both labels present."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 100, (size, length), generator=generator)
    mask = torch.ones_like(input_ids)
    mask[1::2, length // 2:] = 0  # some padding, as real batches have
    return input_ids, mask, torch.arange(size) % 2


def _finite(value: Any, what: str) -> None:
    number = float(value.detach()) if hasattr(value, "detach") else float(value)
    if not math.isfinite(number):
        raise AssertionError(f"{what} is {number}")


def _changed(before: dict[str, Any], model: Any, what: str) -> list[str]:
    import torch

    changed = [name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())]
    if not changed:
        raise AssertionError(f"{what} changed no parameter")
    return changed


def _exercise_optimizer(plugin: Any) -> Any:
    import torch

    from criteria.engine.optimization import parameter_groups

    model = tiny_classifier()
    groups = parameter_groups(model, head_lr_multiplier=2.0, layerwise_lr_decay=0.9,
                              weight_decay=plugin.weight_decay)
    optimizer = plugin.build(groups)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise AssertionError(f"build() returned {type(optimizer).__name__}, not a torch.optim.Optimizer")
    if len(optimizer.param_groups) != len(groups):
        raise AssertionError(f"build() made {len(optimizer.param_groups)} parameter groups from {len(groups)}; "
                             "pass self.param_groups(groups) to the optimizer")
    input_ids, mask, labels = tiny_batch()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    plugin.before_training(optimizer)  # as the engine does, before every training epoch
    model.train()
    loss = torch.nn.functional.cross_entropy(model(input_ids, mask), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    plugin.before_evaluation(optimizer)
    model.eval()
    with torch.no_grad():
        _finite(torch.nn.functional.cross_entropy(model(input_ids, mask), labels), "the loss after one step")
    _changed(before, model, "one optimizer step")
    return optimizer


def _exercise_scheduler(plugin: Any) -> Any:
    import torch

    weights = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    peak = 0.1
    optimizer = torch.optim.SGD([{"params": [weights[0]], "lr": peak}, {"params": [weights[1]], "lr": 10 * peak}])
    plan = TrainingPlan(total_steps=6, warmup_steps=2, steps_per_epoch=3)
    scheduler = plugin.build(optimizer, plan)
    if not callable(getattr(scheduler, "step", None)):
        raise AssertionError(f"build() returned {type(scheduler).__name__}, which has no step()")
    plugin.before_training(scheduler)
    for step in range(1, plan.total_steps + 1):
        weights[0].sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        for group in optimizer.param_groups:
            _finite(group["lr"], f"the learning rate after step {step}")
            if group["lr"] < 0:
                raise AssertionError(f"the learning rate after step {step} is negative: {group['lr']}")
        if step % plan.steps_per_epoch == 0:
            plugin.before_evaluation(scheduler)
            plugin.on_validation(scheduler, 0.5)
            plugin.before_training(scheduler)
    return scheduler


def _exercise_peft(plugin: Any) -> Any:
    import torch

    model = tiny_classifier()
    model.encoder = plugin.build(model.encoder, TrainingPlan(total_steps=4, warmup_steps=1, steps_per_epoch=2))
    trainable = [p for p in model.encoder.parameters() if p.requires_grad]
    if not trainable:
        raise AssertionError("the wrapped encoder has no trainable parameter")
    input_ids, mask, labels = tiny_batch()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    loss = torch.nn.functional.cross_entropy(model(input_ids, mask), labels)
    penalty = plugin.regularization(model.encoder)
    if penalty is not None:
        loss = loss + penalty
    loss.backward()
    optimizer.step()
    plugin.after_optimizer_step(model.encoder, 1)
    changed = _changed(before, model, "one training step")
    if trainable and all(name.startswith("head.") for name in changed):
        raise AssertionError("one training step changed the head only: the method trains nothing in the encoder")
    for method in ("merged", "base_model"):
        result = getattr(plugin, method)(model.encoder)
        if result is not None and not isinstance(result, torch.nn.Module):
            raise AssertionError(f"{method}() returned {type(result).__name__}, not a module or None")
    return model.encoder


def _exercise_formulation(plugin: Any) -> Any:
    """Units for a small corpus (each pair scored once, at a slot of one unit), then a tiny model
    built the way the engine builds one: logits of the right shape and a gradient through them."""
    import numpy as np
    import torch

    from criteria.data.corpus import Corpus, Criterion, Pair
    from criteria.engine.model import CriterionClassifier

    criteria = (Criterion("A.1", "DEPRESSED_MOOD", "Feels sad."), Criterion("A.4", "SLEEP_ISSUES", "Sleeps badly."))
    posts = {"p1": "I cry every day.", "p2": "I sleep four hours.", "p3": "A fine walk."}
    pairs = tuple(Pair(post, c.id, int((post, c.id) in {("p1", "A.1"), ("p2", "A.4")})) for post in posts
                  for c in criteria)
    units = plugin.units(Corpus(posts, criteria, pairs, "criteria.testing"))
    if len(units.pair_unit) != len(pairs) or len(units.pair_slot) != len(pairs):
        raise AssertionError(f"the units score {len(units.pair_unit)} pairs, not the corpus's {len(pairs)}")
    places = {(int(u), int(s)) for u, s in zip(units.pair_unit, units.pair_slot)}
    if len(places) != len(pairs):
        raise AssertionError("two pairs are scored at the same slot of the same unit")
    if not all(0 <= u < len(units) and 0 <= s < units.slots for u, s in places):
        raise AssertionError("a pair is scored at a unit or slot that does not exist")
    if units.criteria is not None and len(units.criteria) != units.slots:
        raise AssertionError(f"the units read {len(units.criteria)} criterion texts for {units.slots} slots")
    model = tiny_classifier()
    outputs = plugin.head_outputs(units.slots)
    head = torch.nn.Linear(32, outputs)

    class FirstToken(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = head

        def forward(self, hidden: Any, mask: Any) -> Any:
            return self.linear(hidden[:, 0])

    criteria_inputs = None
    if units.criteria is not None:
        ids = torch.randint(5, 100, (units.slots, 6))
        criteria_inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    model = CriterionClassifier(model.encoder, FirstToken(), plugin, plugin.build_scorer(outputs), criteria_inputs,
                                outputs)
    input_ids, mask, _ = tiny_batch(size=len(units))
    logits = model(input_ids, mask)
    expected = (len(units), 2) if units.slots == 1 else (len(units), units.slots, 2)
    if tuple(logits.shape) != expected:
        raise AssertionError(f"the model returned shape {tuple(logits.shape)}, not {expected}")
    pair_logits = logits.reshape(len(units), -1, 2)[torch.as_tensor(units.pair_unit), torch.as_tensor(units.pair_slot)]
    loss = torch.nn.functional.cross_entropy(pair_logits.float(), torch.as_tensor(np.asarray([p.label for p in pairs])))
    _finite(loss, "the loss through the formulation's scores")
    loss.backward()
    if head.weight.grad is None or not torch.isfinite(head.weight.grad).all():
        raise AssertionError("no finite gradient reached the head through the formulation's scores")
    return model


def _example_words(seed: int = 0) -> list[Any]:
    """Word indices of 40 token sequences as the pretraining stage sees them: a special token at
    each end (-1), words of one to three pieces between."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(40):
        pieces = rng.integers(1, 4, size=int(rng.integers(5, 30)))
        sequences.append(np.concatenate([[-1], np.repeat(np.arange(len(pieces)), pieces), [-1]]))
    return sequences


def _exercise_masking(plugin: Any) -> Any:
    """The strategy's choices on example sequences (booleans, never a special token, about the
    share asked for, the same for the same seed), then two steps of the pretraining stage with
    them on a tiny masked language model."""
    from types import SimpleNamespace

    import numpy as np
    import torch
    import transformers

    from criteria.engine.config import PretrainConfig
    from criteria.engine.masked_lm import MaskedLM
    from criteria.engine.pretraining import TokenWindows, _train
    from criteria.engine.runtime import Runtime

    probability = 0.25
    select = plugin.build(probability)
    sequences = _example_words()
    chosen, maskable = 0, 0
    for words in sequences:
        picked = np.asarray(select(words, np.random.default_rng(1)))
        if picked.shape != words.shape or picked.dtype != bool:
            raise AssertionError(f"select() returned {picked.dtype} of shape {picked.shape}, not booleans "
                                 f"of shape {words.shape}")
        if picked[words < 0].any():
            raise AssertionError("select() chose a special token (word index -1)")
        again = np.asarray(select(words, np.random.default_rng(1)))
        if not np.array_equal(picked, again):
            raise AssertionError("select() chose differently with the same seed: draw only from rng")
        chosen, maskable = chosen + int(picked.sum()), maskable + int((words >= 0).sum())
    share = chosen / maskable
    if not 0.4 * probability <= share <= 2.0 * probability:
        raise AssertionError(f"select() chose {share:.0%} of the tokens for probability {probability}")
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37))
    ids = tuple(np.where(w < 0, 1, 10 + w % 80).astype(np.int64) for w in sequences[:8])
    windows = TokenWindows(ids, tuple(sequences[:8]))
    tokenizer = SimpleNamespace(pad_token_id=0, mask_token_id=4)
    losses, _ = _train(MaskedLM(model, tokenizer, False), windows,
                       PretrainConfig(epochs=1, batch_size=4, probability=probability), plugin, Runtime(), 0)
    for loss in losses:
        _finite(loss, "the MLM loss with this strategy")
    return select


def _example_posts() -> list[Any]:
    from criteria.data.augment import Post

    return [
        Post("p1", ("I have felt hopeless and empty for months.", "My sister visited on Sunday.",
                    "I sleep twelve hours and still wake up exhausted."), (True, False, True)),
        Post("p2", ("Work was busy this week.", "Nothing I used to enjoy interests me anymore.",
                    "We watched a film."), (False, True, False)),
        Post("p3", ("I keep thinking everyone would be better off without me.",), (True,)),
        Post("p4", ("The weather turned cold.", "I bought new boots."), (False, False)),
    ]


def _exercise_augmenter(plugin: Any) -> Any:
    """The augmenter built with a tiny model's resources and run on example posts: text or None
    for each, the same text for the same seed, and some post rewritten."""
    import torch
    import transformers

    from criteria.data.augment import AugmentContext, augment_posts
    from criteria.engine.masked_lm import MaskedLM, whole_word_vocabulary
    from criteria.engine.model import load_tokenizer

    tokenizer = load_tokenizer(None)  # the embedded model's: a real vocabulary, no weights loaded
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37))
    masked_lm = MaskedLM(model, tokenizer, False)

    def input_embeddings() -> Any:
        words, vectors = whole_word_vocabulary(masked_lm, tokenizer)
        return words, vectors.numpy()

    augment = plugin.build(AugmentContext(tokenizer, lambda: masked_lm, input_embeddings))
    if augment is None:
        return None  # no augmentation (a plugin such as `none`)
    posts = _example_posts()
    copies = augment_posts(posts, augment, 1.0, seed=7)
    if not all(isinstance(text, str) and text.strip() for text in copies.values()):
        raise AssertionError("augment() returned something other than a non-empty text or None")
    if not copies:
        raise AssertionError("augment() rewrote none of the example posts (a copy equal to its post is none)")
    if augment_posts(posts, augment, 1.0, seed=7) != copies:
        raise AssertionError("augment() gave another text for the same seed: draw only from the rng it is given")
    return augment


def _exercise_head(plugin: Any) -> Any:
    import torch

    head = plugin.build(32, 2)
    hidden = torch.randn(4, 6, 32, requires_grad=True)
    mask = torch.ones(4, 6, dtype=torch.long)
    mask[1, 3:] = 0
    logits = head(hidden, mask)
    if tuple(logits.shape) != (4, 2):
        raise AssertionError(f"the head returned shape {tuple(logits.shape)}, not (batch, num_labels) = (4, 2)")
    logits.sum().backward()
    if hidden.grad is None or not torch.isfinite(hidden.grad).all():
        raise AssertionError("no finite gradient reached the hidden states through the head")
    return head


def _exercise_loss(plugin: Any) -> Any:
    import torch

    loss_fn = plugin.build([30, 10])
    logits = torch.randn(8, 2, requires_grad=True)
    labels = torch.tensor([0, 1] * 4)
    value = loss_fn(logits, labels)
    if value.dim() != 0:
        raise AssertionError(f"the loss returned shape {tuple(value.shape)}, not a scalar")
    _finite(value, "the loss")
    value.backward()
    if logits.grad is None or not logits.grad.abs().sum() > 0:
        raise AssertionError("the loss gives the logits no gradient")
    return loss_fn


def _toy_study(sampler: Any = None, pruner: Any = None, trials: int = 8, steps: int = 4) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner or optuna.pruners.NopPruner())

    def objective(trial: Any) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        n = trial.suggest_int("n", 1, 4)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        value = 0.0
        for step in range(steps):
            value = x * (step + 1) / n + (kind == "a")
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=trials)
    return study


def _exercise_pruner(plugin: Any) -> Any:
    import optuna
    from optuna.trial import TrialState

    pruner = plugin.build(Registry.from_entry_points())  # a wrapping pruner finds others by name
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise AssertionError(f"build() returned {type(pruner).__name__}, not an optuna.pruners.BasePruner")
    study = _toy_study(pruner=pruner)
    states = {t.state for t in study.trials}
    if not states <= {TrialState.COMPLETE, TrialState.PRUNED} or TrialState.COMPLETE not in states:
        raise AssertionError(f"the toy study ended with trial states {sorted(s.name for s in states)}")
    return pruner


def _exercise_sampler(plugin: Any) -> Any:
    import warnings

    import optuna
    from optuna.trial import TrialState

    from criteria.plugin.ranges import Categorical, FloatRange

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = plugin.build(seed=0)
        if not isinstance(sampler, optuna.samplers.BaseSampler):
            raise AssertionError(f"build() returned {type(sampler).__name__}, not an optuna.samplers.BaseSampler")
        problems = plugin.space_problems([("x", FloatRange(0.0, 1.0)), ("kind", Categorical(("a", "b")))])
        if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
            raise AssertionError(f"space_problems() returned {problems!r}, not a list of messages")
        study = _toy_study(sampler=sampler)
    if not all(t.state == TrialState.COMPLETE for t in study.trials):
        raise AssertionError("the toy study did not complete every trial")
    return sampler


def _exercise_backend(plugin: Any) -> Any:
    import torch

    from criteria.engine.runtime import Runtime

    threads = torch.get_num_threads()  # a backend may set torch's threads: leave the caller's
    try:
        runtime = plugin.build()
        if not isinstance(runtime, Runtime):
            raise AssertionError(f"build() returned {type(runtime).__name__}, not a criteria.Runtime")
        layer = torch.nn.Linear(8, 2).to(runtime.device)
        with runtime.autocast():
            out = layer(torch.randn(4, 8, device=runtime.device))
        out.float().sum().backward()
        _finite(out.float().sum(), "a layer's output on the runtime's device")
    finally:
        torch.set_num_threads(threads)
    return runtime


# One exercise per kind: a new kind adds its own (the project's tests fail until it does).
_EXERCISES: dict[str, Callable[[Any], Any]] = {
    "optimizer": _exercise_optimizer,
    "scheduler": _exercise_scheduler,
    "peft": _exercise_peft,
    "formulation": _exercise_formulation,
    "head": _exercise_head,
    "loss": _exercise_loss,
    "augmenter": _exercise_augmenter,
    "masking": _exercise_masking,
    "pruner": _exercise_pruner,
    "sampler": _exercise_sampler,
    "backend": _exercise_backend,
}
