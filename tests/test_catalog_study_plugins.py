"""The catalog's pruners and samplers, each driving a real in-memory Optuna study.

Pruners run a toy objective that reports a value per step (value = x * step, so a small ``x`` is
a clearly bad trial); Wilcoxon gets per-fold values, as the study gives it. Samplers search a
space that criteria builds from a spec, as ``criteria run`` does.
"""

from __future__ import annotations

from typing import Any

import pytest
from builtin_plugins import BUILTINS, make

REGISTRY = BUILTINS

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(autouse=True, scope="module")
def _quiet_optuna():
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    yield
    optuna.logging.set_verbosity(previous)


# --- pruners -------------------------------------------------------------------------------

N_STEPS, N_TRIALS = 8, 24


def _run(pruner: Any, objective_steps, name: str, n_trials: int = N_TRIALS):
    """A maximizing study whose trial reports ``objective_steps(x)`` step by step (from 1)."""
    import optuna

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        values = objective_steps(x)
        for step, value in enumerate(values, start=1):
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return values[-1]

    # a fixed study name: Hyperband assigns trials to brackets by hashing it
    study = optuna.create_study(direction="maximize", pruner=pruner, study_name=f"catalog-{name}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=n_trials)
    return study


def _split(study) -> tuple[list[Any], list[Any]]:
    from optuna.trial import TrialState

    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return pruned, complete


def _rising(x: float) -> list[float]:
    return [x * step for step in range(1, N_STEPS + 1)]


EPOCH_PRUNERS = {
    "median": dict(n_startup_trials=2, n_warmup_steps=1),
    "percentile": dict(percentile=50.0, n_startup_trials=2, n_warmup_steps=1),
    "hyperband": dict(min_resource=1, max_resource=N_STEPS, reduction_factor=2),
    "successive_halving": dict(min_resource=1, reduction_factor=2),
    "threshold": dict(lower=1.0, n_warmup_steps=2),
}  # patient needs values that stagnate: see its own tests below


@pytest.mark.parametrize("name", list(EPOCH_PRUNERS))
def test_epoch_pruner_stops_the_clearly_worse_trials(name):
    import optuna

    plugin = make("pruner", name, **EPOCH_PRUNERS[name])
    assert plugin.reports == "epoch"
    pruner = plugin.build(REGISTRY)
    assert isinstance(pruner, optuna.pruners.BasePruner)

    pruned, complete = _split(_run(pruner, _rising, name))
    assert len(pruned) + len(complete) == N_TRIALS
    assert pruned, f"{name} pruned nothing in {N_TRIALS} trials"
    assert complete, f"{name} pruned every trial"
    xs = lambda trials: [t.params["x"] for t in trials]  # noqa: E731
    # value = x * step: the pruned trials are the ones with small x
    assert sum(xs(pruned)) / len(pruned) < sum(xs(complete)) / len(complete)
    assert min(xs(pruned)) < 0.5 < max(xs(complete))


def test_none_pruner_never_prunes():
    pruned, complete = _split(_run(make("pruner", "none").build(REGISTRY), _rising, "none"))
    assert pruned == [] and len(complete) == N_TRIALS


def test_percentile_keeps_fewer_trials_the_lower_the_percentile():
    counts = {}
    for percentile in (25.0, 75.0):
        plugin = make("pruner", "percentile", percentile=percentile, n_startup_trials=2, n_warmup_steps=1)
        pruner = plugin.build(REGISTRY)
        counts[percentile] = len(_split(_run(pruner, _rising, "percentile"))[1])
    assert counts[25.0] < counts[75.0]


def test_threshold_prunes_exactly_the_trials_below_the_bound_after_warmup():
    # steps count epochs from 1; with 2 warmup steps the first checked is step 2, whose value 2x
    # is below 1.0 iff x < 0.5
    study = _run(make("pruner", "threshold", lower=1.0, n_warmup_steps=2).build(REGISTRY), _rising, "threshold")
    pruned, complete = _split(study)
    assert {t.number for t in pruned} == {t.number for t in study.trials if t.params["x"] < 0.5}
    assert all(t.last_step == 2 for t in pruned)


def test_threshold_without_bounds_prunes_only_diverged_trials():
    def diverges_when_small(x: float) -> list[float]:
        return [float("nan") if x < 0.3 else x * step for step in range(1, N_STEPS + 1)]

    study = _run(make("pruner", "threshold").build(REGISTRY), diverges_when_small, "threshold-nan")
    pruned, complete = _split(study)
    assert {t.number for t in pruned} == {t.number for t in study.trials if t.params["x"] < 0.3}
    assert pruned and complete


def test_threshold_rejects_bounds_out_of_order():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must not exceed"):
        REGISTRY.get("pruner", "threshold").cls.Config(lower=2.0, upper=1.0)


# Patience: values rise for 3 steps, then slip; a trial stagnates at step 3 + patience + 1.
PEAK = 3


def _peaks_then_slips(x: float) -> list[float]:
    return [x * min(step, PEAK) - 0.01 * max(0, step - PEAK) for step in range(1, N_STEPS + 1)]


def test_patient_lets_the_wrapped_median_prune_only_after_patience_runs_out():
    patience = 2
    median = make("pruner", "median").build(REGISTRY)  # what `patient` wraps: median with its defaults
    median_pruned, _ = _split(_run(median, _peaks_then_slips, "median"))
    assert median_pruned and min(t.last_step for t in median_pruned) < PEAK  # median alone stops them early

    patient = make("pruner", "patient", wrapped="median", patience=patience).build(REGISTRY)
    pruned, complete = _split(_run(patient, _peaks_then_slips, "patient"))
    # pruned at the first step whose last `patience` + 1 values all trail the best before them
    assert pruned and {t.last_step for t in pruned} == {PEAK + patience + 1}
    # every trial stagnates there, but the wrapped median keeps the good ones
    assert complete and max(t.params["x"] for t in pruned) < max(t.params["x"] for t in complete)


def test_patient_wrapping_none_prunes_on_patience_alone():
    patience = 1
    pruner = make("pruner", "patient", wrapped="none", patience=patience).build(REGISTRY)
    study = _run(pruner, _peaks_then_slips, "patient-none")
    pruned, complete = _split(study)
    # every trial stagnates once its values slip: all stop at the same step, none completes
    assert complete == [] and {t.last_step for t in pruned} == {PEAK + patience + 1}


def test_patient_cannot_wrap_itself_or_a_fold_pruner():
    from criteria.errors import CriteriaError
    from pydantic import ValidationError

    cls = REGISTRY.get("pruner", "patient").cls
    with pytest.raises(ValidationError, match="cannot wrap itself"):
        cls.Config(wrapped="patient")
    with pytest.raises(CriteriaError, match="cannot wrap 'wilcoxon'.*per fold"):
        cls(cls.Config(wrapped="wilcoxon")).build(REGISTRY)
    with pytest.raises(CriteriaError, match="unknown pruner 'medain'.*did you mean 'median'"):
        cls(cls.Config(wrapped="medain")).build(REGISTRY)


FOLDS = 10
# Fold difficulty differs a lot (paired comparisons are what Wilcoxon is for); noise is small.
FOLD_OFFSETS = [0.0, 0.3, -0.2, 0.5, -0.4, 0.1, 0.25, -0.1, 0.4, -0.3]


def test_wilcoxon_prunes_a_trial_whose_fold_values_are_clearly_worse():
    import optuna
    from optuna.trial import TrialState

    plugin = make("pruner", "wilcoxon", p_threshold=0.1, n_startup_steps=2)
    assert plugin.reports == "fold"  # the study reports each fold's final value, fold as the step

    def objective(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        values = []
        for fold in range(FOLDS):
            values.append(x + FOLD_OFFSETS[fold] + 0.01 * ((fold * 7) % 3))
            trial.report(values[-1], fold)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return sum(values) / len(values)  # Wilcoxon compares against the best trial's mean

    study = optuna.create_study(direction="maximize", pruner=plugin.build(REGISTRY))
    for x in (0.8, 0.2, 0.85):  # a first trial, a clearly worse one, a better one
        study.enqueue_trial({"x": x})
    study.optimize(objective, n_trials=3)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    # stopped as soon as the evidence sufficed, well before the last fold
    assert study.trials[1].last_step < FOLDS - 1


# --- samplers ------------------------------------------------------------------------------

# The other kinds fixed to one plugin with its defaults, so the space is what each test names.
FIXED_KINDS = """
[backend]
use = "cpu"
[formulation]
use = "pair"
[scheduler]
use = "linear"
search_params = false
[peft]
use = "none"
search_params = false
[head]
use = "linear"
search_params = false
[loss]
use = "cross_entropy"
search_params = false
[train]
hidden_dropout = {low = 0.0, high = 0.3}
head_lr_multiplier = {low = 1.0, high = 20.0, log = true}
"""
# Conditional and categorical: two optimizers, each with its declared ranges (betas, eps, ...).
MIXED_SPACE = FIXED_KINDS + '[optimizer]\nuse = ["adamw", "sgd"]\n'
# Numeric only: what CMA-ES can search.
NUMERIC_SPACE = FIXED_KINDS + """
[optimizer]
use = "adamw"
search_params = false
[optimizer.adamw]
lr = {low = 1e-5, high = 1e-3, log = true}
"""
SAMPLER_CLASSES = {"tpe": "TPESampler", "random": "RandomSampler", "gp": "GPSampler",
                   "cmaes": "CmaEsSampler", "qmc": "QMCSampler", "nsga2": "NSGAIISampler"}
# Small enough that each model-based sampler gets past its random start-up within the study.
# (A GP fit takes about a second on 2 cores, so gp makes only one per study.)
SAMPLER_CONFIG = {"tpe": "n_startup_trials = 3", "gp": "n_startup_trials = 7", "nsga2": "population_size = 4"}
N_SAMPLED = 8


def _spec(tmp_path, sampler: str, space: str):
    from criteria.spec.load import load_spec

    text = f'[sampler]\nuse = "{sampler}"\n'
    if sampler in SAMPLER_CONFIG:
        text += f"[sampler.{sampler}]\n{SAMPLER_CONFIG[sampler]}\n"
    path = tmp_path / f"{sampler}.toml"
    path.write_text(text + space)
    return load_spec(path, REGISTRY)


def _search(spec, seed: int, n_trials: int = N_SAMPLED):
    import math

    import optuna

    study = optuna.create_study(direction="maximize", sampler=spec.sampler.build(seed=seed))

    def objective(trial):
        config = spec.space.suggest(trial)
        optimizer = config.plugins["optimizer"]
        # a smooth score with its optimum inside the ranges
        train = config.train
        return (-(train.hidden_dropout - 0.1) ** 2 - (math.log(train.head_lr_multiplier) - 1) ** 2
                - (math.log10(optimizer.config.lr) + 4) ** 2 + (0.1 if optimizer.name == "adamw" else 0.0))

    study.optimize(objective, n_trials=n_trials)
    return study


def _inside(value: Any, search: Any) -> bool:
    from criteria.plugin.ranges import Categorical, choice_label

    if isinstance(search, Categorical):
        return value in [choice_label(c) for c in search.choices]
    return search.low <= value <= search.high


@pytest.mark.parametrize("name", list(SAMPLER_CLASSES))
def test_sampler_searches_a_criteria_space_reproducibly(tmp_path, name):
    import optuna
    from optuna.trial import TrialState

    make("sampler", name)  # skips with the reason when it cannot run here
    space = NUMERIC_SPACE if name == "cmaes" else MIXED_SPACE  # cmaes: see the categorical test below
    spec = _spec(tmp_path, name, space)
    assert spec.sampler.name == name
    dims = dict(spec.space.dimensions())

    study = _search(spec, seed=0)
    assert type(study.sampler) is getattr(optuna.samplers, SAMPLER_CLASSES[name])
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * N_SAMPLED
    for trial in study.trials:
        assert trial.params and all(_inside(v, dims[k]) for k, v in trial.params.items()), trial.params
    if space is MIXED_SPACE:  # the conditional space: only the chosen optimizer's parameters
        for trial in study.trials:
            chosen = trial.params["optimizer"]
            assert {k.split(".")[1] for k in trial.params if k.startswith("optimizer.")} == {chosen}

    again = _search(spec, seed=0)
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    other = _search(spec, seed=1, n_trials=2)  # the seed already tells in the first trials
    assert [t.params for t in other.trials] != [t.params for t in study.trials[:2]]


def test_cmaes_drives_a_numeric_space_itself(tmp_path):
    make("sampler", "cmaes")
    study = _search(_spec(tmp_path, "cmaes", NUMERIC_SPACE), seed=0)
    # after its single random start-up trial, every trial is a CMA-ES candidate
    assert all(any(k.startswith("cma:") for k in t.system_attrs) for t in study.trials[1:])


def test_cmaes_rejects_a_space_with_categoricals_through_the_spec(tmp_path):
    from criteria.spec.errors import SpecError

    make("sampler", "cmaes")
    with pytest.raises(SpecError) as raised:
        _spec(tmp_path, "cmaes", MIXED_SPACE)
    message = str(raised.value)
    assert "sampler.use: CMA-ES cannot sample categorical parameters" in message
    # it names the categorical dimensions (the optimizer choice and the tuple choices) and the fixes
    assert "optimizer, " in message and "optimizer.adamw.betas" in message
    assert 'use = "NAME"' in message and 'use = "tpe"' in message


def test_cmaes_accepts_single_valued_categoricals():
    from criteria.plugin.ranges import Categorical, FloatRange

    cmaes = REGISTRY.get("sampler", "cmaes").cls()
    assert cmaes.space_problems([("optimizer", Categorical(("adamw",))), ("x", FloatRange(0.0, 1.0))]) == []
    assert cmaes.space_problems([("n", Categorical((8, 16)))]) != []


def test_nsga2_runs_a_single_objective_study_past_its_first_generation(tmp_path):
    make("sampler", "nsga2")
    study = _search(_spec(tmp_path, "nsga2", MIXED_SPACE), seed=0)
    generations = [t.system_attrs["NSGAIISampler:generation"] for t in study.trials]
    assert max(generations) >= 1  # population 4, 8 trials: children were bred from parents
    assert study.best_value == max(t.value for t in study.trials)


@pytest.mark.parametrize("name", list(SAMPLER_CLASSES))
def test_sampler_declares_multi_objective_support_truthfully(tmp_path, name):
    """``multi_objective`` is what the spec checks; Optuna's sampler must agree with it."""
    import math

    import optuna
    from optuna.trial import TrialState

    make("sampler", name)
    spec = _spec(tmp_path, name, NUMERIC_SPACE)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=spec.sampler.build(seed=0))

    def objective(trial):
        config = spec.space.suggest(trial)
        return -abs(math.log10(config.plugins["optimizer"].config.lr) + 4), config.train.hidden_dropout

    if spec.sampler.multi_objective:
        study.optimize(objective, n_trials=N_SAMPLED)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * N_SAMPLED and study.best_trials
    else:
        with pytest.raises(ValueError, match="multi-objective"):
            study.optimize(objective, n_trials=2)


def test_only_the_pruner_that_never_prunes_serves_several_objectives():
    # Optuna refuses trial.report and should_prune in a multi-objective study
    able = [name for name, info in REGISTRY.plugins("pruner").items() if info.cls.multi_objective]
    assert able == ["none"]
