"""Scale-out on a real PostgreSQL server: several workers share one study, a killed worker's
trial is retried, SQLite refuses a second worker. Tiny model, a few posts, one epoch a trial.

The server comes from CRITERIA_TEST_POSTGRES_URL (`.ci/run` starts one); without it these tests
skip, except under CRITERIA_REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from criteria.errors import CriteriaError
from criteria.plugin.registry import get_registry
from criteria.spec.load import load_spec
from criteria.study.budget import counts_toward_trials, enqueued_configuration
from criteria.study.storage import load_study
from criteria.study.workers import WORKER_ATTR
from test_catalog_study import write_small_pairs

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRIALS = 24
WORKERS = 4


def write_spec(folder: Path, model: Path, *, trials: int = TRIALS, epochs: int = 1, storage: str = "env:CRITERIA_STORAGE",
               name: str = "scale-out") -> Path:
    """Two enqueued starting points, the rest sampled at random over continuous ranges (so two
    equal parameter sets could only come from two workers drawing the same numbers)."""
    write_small_pairs(folder / "pairs.csv", posts=16)
    spec = folder / "study.toml"
    spec.write_text(f"""
[study]
name = "{name}"
trials = {trials}
seed = 5
storage = "{storage}"
heartbeat_seconds = 1
grace_seconds = 5
[[study.enqueue]]
optimizer = "adamw"
"optimizer.adamw.lr" = 3e-4
[[study.enqueue]]
optimizer = "sgd"
"optimizer.sgd.lr" = 0.01
[data]
format = "pairs"
path = "pairs.csv"
max_length = 64
test_fraction = 0.25
[model]
name = "{model}"
[train]
epochs = {epochs}
batch_size = 32
eval_batch_size = 128
patience = 0
[sampler]
use = "random"
[pruner]
use = "none"
[optimizer]
use = ["adamw", "sgd"]
[optimizer.adamw]
lr = {{low = 1e-4, high = 1e-3, log = true}}
[optimizer.sgd]
lr = {{low = 1e-3, high = 1e-1, log = true}}
[scheduler]
use = "constant"
[peft]
use = "none"
[head]
use = "linear"
[loss]
use = "cross_entropy"
[backend]
use = "cpu"
[backend.cpu]
threads = 1
""")
    return spec


def criteria_run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "criteria.cli", "run", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "COLUMNS": "200", **env})


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate()
    assert process.returncode == 0, output[-4000:]
    return output


def mlflow_runs(folder: Path, study: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(study).experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


@pytest.fixture
def study_env(tmp_path, postgres_database, monkeypatch) -> dict[str, str]:
    """The spec's storage (env:CRITERIA_STORAGE) is a fresh PostgreSQL database; MLflow a SQLite file."""
    monkeypatch.setenv("CRITERIA_STORAGE", postgres_database)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return {}


def test_four_workers_run_exactly_the_trials_asked_once_each(tmp_path, tiny_bert, study_env):
    spec_file = write_spec(tmp_path, tiny_bert)
    output = finish(criteria_run(str(spec_file), "--workers", str(WORKERS), cwd=tmp_path, env=study_env))

    spec = load_spec(spec_file, get_registry())
    study = load_study(spec, create=False, read_only=True)
    trials = study.get_trials(deepcopy=False)
    assert sum(counts_toward_trials(t) for t in trials) == TRIALS
    assert Counter(t.state.name for t in trials)["COMPLETE"] == TRIALS
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    # every enqueued configuration ran exactly once, and no two trials share a parameter set
    enqueued = Counter(enqueued_configuration(t) for t in complete if enqueued_configuration(t))
    assert len(enqueued) == 2 and set(enqueued.values()) == {1}
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == TRIALS
    # four workers took part, each with its own sampler seed
    workers = {(t.user_attrs[WORKER_ATTR]["index"], t.user_attrs[WORKER_ATTR]["seed"]) for t in complete}
    assert {index for index, _ in workers} == set(range(WORKERS))
    assert len({seed for _, seed in workers}) == WORKERS
    assert "finished trials" in output and all(f"w{i}| " in output for i in range(WORKERS))

    parents, children = mlflow_runs(tmp_path, "scale-out")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == TRIALS
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {r.info.status for r in children} == {"FINISHED"}
    assert len({r.data.tags["criteria.worker"] for r in children}) == WORKERS
    assert study.user_attrs["criteria.mlflow_parent_run"] == parents[0].info.run_id
    # exported once, by the parent process, after the workers
    assert (tmp_path / "outputs" / "scale-out" / "best-model" / "model" / "criteria_model.json").is_file()
    assert not list((tmp_path / "outputs" / "scale-out").glob(".best-model.*"))


def test_a_worker_killed_mid_trial_loses_nothing(tmp_path, tiny_bert, study_env):
    spec_file = write_spec(tmp_path, tiny_bert, epochs=2)
    process = criteria_run(str(spec_file), "--workers", "2", cwd=tmp_path, env=study_env)
    spec = load_spec(spec_file, get_registry())
    victim = None
    while victim is None and process.poll() is None:  # a trial between its first and its last epoch
        time.sleep(0.2)
        try:
            study = load_study(spec, create=False, read_only=True)
        except CriteriaError:  # the parent has not created the study yet
            continue
        running = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                   if WORKER_ATTR in t.user_attrs and len(t.intermediate_values) == 1]
        victim = running[0] if running else None
    assert victim is not None, "the study ended before a trial could be caught running"
    os.kill(victim.user_attrs[WORKER_ATTR]["pid"], signal.SIGKILL)
    output = finish(process)
    study = load_study(spec, create=False, read_only=True)

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    lost = trials[victim.number]
    assert lost.state.name == "FAIL" and not counts_toward_trials(lost)
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == lost.params
    assert lost.intermediate_values.items() <= retries[0].intermediate_values.items()  # inherited
    assert sum(counts_toward_trials(t) for t in trials.values()) == TRIALS
    assert Counter(t.state.name for t in trials.values())["COMPLETE"] == TRIALS
    assert f"trial {victim.number} failed" in output and f"run again as trial {retries[0].number}" in output
    assert f"exited with code {-signal.SIGKILL}" in output

    parents, children = mlflow_runs(tmp_path, "scale-out")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    states = Counter(r.data.tags.get("criteria.state") for r in children)
    assert states == {"complete": TRIALS, "lost": 1}
    lost_run = next(r for r in children if r.data.tags.get("criteria.state") == "lost")
    assert lost_run.info.status == "FAILED" and lost_run.data.tags["criteria.trial"] == str(victim.number)


def test_sqlite_with_two_workers_is_refused_before_anything_starts(tmp_path, tiny_bert, cli):
    spec_file = write_spec(tmp_path, tiny_bert, storage=f"sqlite:///{tmp_path / 'studies.db'}")
    result = cli("run", str(spec_file), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "SQLite serves one worker" in result.stderr and "PostgreSQL" in result.stderr
    assert "criteria[postgres]" in result.stderr and "--workers 1" in result.stderr
    assert not (tmp_path / "studies.db").exists() and not (tmp_path / "mlflow.db").exists()
