"""The trial budget shared by workers, worker identity and pinning, and SQLite's one worker:
decided from the storage alone, without training anything (seconds)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from criteria.plugin.registry import get_registry
from criteria.spec.load import load_spec
from criteria.study.budget import NOT_NEEDED_ATTR, StudyBusy, TrialBudget, TrialNotNeeded
from criteria.study.outcomes import INTERRUPTED_ATTR
from criteria.study.runner import enqueue_starting_points
from criteria.study.storage import RetryLostTrials, load_study, storage_url
from criteria.study.workers import (
    WORKER_ATTR,
    Worker,
    free_index,
    index_from_environment,
    index_taken,
    local_worker_count,
    local_workers,
    process_is_gone,
    worker_seed,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
# These tests play workers with study.ask() and tell(), outside Study.optimize.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")
#: The budget's rules for a storage that serves many workers; the study itself is a SQLite file.
MANY_WORKERS = "postgresql+psycopg://user@db.example:5432/studies"


def spec_for(folder: Path, trials: int = 3, enqueue: str = ""):
    path = folder / "spec.toml"
    path.write_text(f"""
[study]
name = "budget"
trials = {trials}
storage = "sqlite:///{folder / 'studies.db'}"
heartbeat_seconds = 1
grace_seconds = 3
{enqueue}
[optimizer]
use = ["adamw", "sgd"]
[sampler]
use = "random"
[pruner]
use = "none"
""")
    return load_spec(path, get_registry())


def budget_for(spec, url: str = MANY_WORKERS, worker: Worker | None = None, sleep=None):
    lost = RetryLostTrials(spec.study.max_retries, forget=(WORKER_ATTR,))
    study = load_study(spec, lost_trials=lost)
    return study, TrialBudget(study, spec, worker or Worker.here(0, 1), lost, url, **({"sleep": sleep} if sleep else {}))


def complete(study, count: int) -> None:
    for _ in range(count):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, 0.5)


def dead_pid() -> int:
    """The pid of a process of this machine that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_two_trials_racing_for_the_last_place_the_later_one_is_not_needed(tmp_path):
    study, budget = budget_for(spec_for(tmp_path, trials=3))
    complete(study, 2)
    first, second = study.ask(), study.ask()  # two workers asked at the same moment
    budget.admit(first)
    with pytest.raises(TrialNotNeeded) as raised:
        budget.admit(second)
    assert raised.value.stop and "has its 3 trials finished or running" in str(raised.value)
    assert second.user_attrs[NOT_NEEDED_ATTR]
    study.tell(second, state=optuna.trial.TrialState.FAIL)  # as Optuna ends it
    study.tell(first, 0.5)
    assert not budget.next_trial(deadline=None) and budget.tally().finished == 3  # the unneeded one does not count


def test_an_enqueued_configuration_queued_twice_runs_once(tmp_path):
    enqueue = '[[study.enqueue]]\noptimizer = "sgd"'
    spec = spec_for(tmp_path, trials=5, enqueue=enqueue)
    study, budget = budget_for(spec)
    study.enqueue_trial({"optimizer": "sgd"})
    study.enqueue_trial({"optimizer": "sgd"})  # two workers queued it at the same moment
    first, second = study.ask(), study.ask()
    budget.admit(first)
    with pytest.raises(TrialNotNeeded) as raised:
        budget.admit(second)
    assert not raised.value.stop and f"trial {first.number}'s" in str(raised.value)
    # once queued, running or finished, a resumed study does not queue it again
    enqueue_starting_points(study, spec)
    assert len(study.get_trials(deepcopy=False)) == 2


def test_an_interrupted_enqueued_configuration_is_queued_again_on_resume(tmp_path):
    spec = spec_for(tmp_path, enqueue='[[study.enqueue]]\noptimizer = "sgd"')
    study, _ = budget_for(spec)
    enqueue_starting_points(study, spec)
    trial = study.ask()
    trial.set_user_attr(INTERRUPTED_ATTR, True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # Ctrl-C
    enqueue_starting_points(study, spec)
    waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == {"optimizer": "sgd"}


def test_a_trial_of_a_vanished_local_worker_is_failed_and_queued_again_at_once(tmp_path):
    study, budget = budget_for(spec_for(tmp_path, trials=2))
    complete(study, 1)
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.report(0.25, 1)
    gone = Worker(index=3, seed=9, pid=dead_pid())
    trial.set_user_attr(WORKER_ATTR, gone.attrs())
    assert process_is_gone(study.get_trials(deepcopy=False)[-1])

    assert budget.next_trial(deadline=None)  # the lost trial does not count: another is needed
    trials = study.get_trials(deepcopy=False)
    assert trials[1].state == optuna.trial.TrialState.FAIL
    retry = trials[2]
    assert retry.state == optuna.trial.TrialState.WAITING and retry.system_attrs["failed_trial"] == 1
    assert retry.params == trials[1].params and retry.intermediate_values == {1: 0.25}
    assert WORKER_ATTR not in retry.user_attrs  # the retry is not the lost worker's


def test_while_the_last_trials_run_elsewhere_a_worker_waits_and_then_stops(tmp_path):
    running = []

    def sleep(seconds):  # instead of waiting, the other worker finishes its trial
        assert seconds <= 1
        study.tell(running.pop(), 0.5)

    spec = spec_for(tmp_path, trials=2)
    study, budget = budget_for(spec, sleep=sleep)
    complete(study, 1)
    running.append(study.ask())
    running[0].set_user_attr(WORKER_ATTR, Worker(index=1, seed=2, pid=os.getppid()).attrs())  # alive
    assert not budget.next_trial(deadline=None)
    assert not running and budget.tally().finished == 2


def test_sqlite_refuses_a_second_process_while_the_first_runs_a_trial(tmp_path):
    spec = spec_for(tmp_path)
    url = storage_url(spec)
    study, budget = budget_for(spec, url=url)
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, Worker(index=0, seed=1, pid=os.getppid()).attrs())
    with pytest.raises(StudyBusy) as raised:
        budget.check_alone()
    message = str(raised.value)
    assert "being run by another process" in message and f":{os.getppid()}" in message
    assert "SQLite storage serves one worker" in message and "PostgreSQL" in message
    assert "criteria study status" in message

    trial.set_user_attr(WORKER_ATTR, Worker(index=0, seed=1, pid=dead_pid()).attrs())  # that process died
    budget.check_alone()  # its trial is failed and queued again; this process may go on
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["FAIL", "WAITING"]


def test_on_sqlite_of_two_processes_that_started_together_the_later_trial_yields(tmp_path):
    spec = spec_for(tmp_path)
    study, budget = budget_for(spec, url=storage_url(spec))
    first, second = study.ask(), study.ask()
    with pytest.raises(TrialNotNeeded) as raised:
        budget.admit(second)
    assert raised.value.stop and isinstance(budget.busy, StudyBusy)
    budget.busy = None
    budget.admit(first)


def test_the_worker_that_ran_the_last_trial_finished_the_study(tmp_path):
    me, other = Worker.here(0, 1), Worker(index=1, seed=2, pid=os.getppid())
    study, budget = budget_for(spec_for(tmp_path, trials=2), worker=me)
    for worker in (other, me):
        trial = study.ask()
        trial.set_user_attr(WORKER_ATTR, worker.attrs())
        study.tell(trial, 0.5)
    assert budget.ran_last_trial()
    _, theirs = budget_for(spec_for(tmp_path, trials=2), worker=other)
    assert not theirs.ran_last_trial()


def test_each_worker_seeds_its_sampler_differently_and_reproducibly():
    assert worker_seed(13, 0) == 13  # one worker samples exactly as before
    seeds = [worker_seed(13, k) for k in range(64)]
    assert len(set(seeds)) == 64 and seeds == [worker_seed(13, k) for k in range(64)]
    assert worker_seed(13, 1) != worker_seed(14, 0) and worker_seed(13, 1) != 14
    workers = [Worker.here(k, 13) for k in range(2)]
    assert workers[0].host == socket.gethostname() and workers[0].pid == os.getpid()


def test_the_worker_index_comes_from_the_launcher(monkeypatch):
    for name in ("CRITERIA_WORKER_INDEX", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    assert index_from_environment() is None
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "4")  # a Kubernetes indexed Job
    assert index_from_environment() == 4
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert index_from_environment() == 7
    monkeypatch.setenv("CRITERIA_WORKER_INDEX", "x")
    with pytest.raises(Exception, match="whole number"):
        index_from_environment()


def test_local_workers_get_their_own_gpu_and_cores(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    workers = local_workers(2, first_index=4)
    assert [(w.index, w.gpu, w.cores) for w in workers] == [(4, "3", (0, 1, 2, 3)), (5, "5", (4, 5, 6, 7))]
    assert workers[1].environment()["CUDA_VISIBLE_DEVICES"] == "5"
    crowded = local_workers(10)
    assert [w.cores for w in crowded[:9]] == [(i % 8,) for i in range(9)] and crowded[9].gpu == "5"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr("criteria.study.workers.cuda_devices", lambda: ())
    assert local_workers(1)[0].gpu is None and local_worker_count("auto") == 1
    with pytest.raises(Exception, match="--workers takes a number"):
        local_worker_count("0")


def test_a_worker_started_without_an_index_takes_a_free_one_if_worker_0_is_running(tmp_path):
    study, _ = budget_for(spec_for(tmp_path))
    finished, running = study.ask(), study.ask()
    finished.set_user_attr(WORKER_ATTR, Worker(index=3, seed=1, pid=1).attrs())
    study.tell(finished, 0.5)
    assert free_index(study.get_trials(deepcopy=False)) == 0  # nobody is running: this is worker 0
    running.set_user_attr(WORKER_ATTR, Worker(index=0, seed=1, pid=os.getppid()).attrs())
    assert free_index(study.get_trials(deepcopy=False)) == 4  # a second machine joined without an index


def test_a_worker_whose_index_another_running_worker_holds_moves_to_a_free_one(tmp_path):
    study, _ = budget_for(spec_for(tmp_path))
    mine, theirs = Worker.here(0, 1), Worker(index=0, seed=1, pid=os.getppid())
    earlier, later = study.ask(), study.ask()
    earlier.set_user_attr(WORKER_ATTR, theirs.attrs())
    later.set_user_attr(WORKER_ATTR, mine.attrs())
    trials = study.get_trials(deepcopy=False)
    assert index_taken(trials, later.number, mine)  # the later trial's worker moves
    assert not index_taken(trials, earlier.number, theirs)  # the earlier one keeps its index
    assert free_index(trials, taken=True) == 1


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_killed_process_not_yet_reaped_counts_as_gone():
    import signal
    import time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        attrs = {WORKER_ATTR: Worker(index=1, seed=2, pid=child.pid).attrs()}
        trial = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, user_attrs=attrs)
        assert not process_is_gone(trial)
        os.kill(child.pid, signal.SIGKILL)
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[-1].split()[0] != "Z":
            time.sleep(0.05)  # dead, not reaped: a zombie
        assert process_is_gone(trial)
    finally:
        child.kill()
        child.wait()


def test_every_worker_of_a_study_nests_under_its_one_parent_run_and_a_new_study_gets_its_own(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from criteria.study.runner import open_tracker
    from criteria.study.storage import open_study
    from criteria.study.tracking import PARENT_RUN_ATTR

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = SimpleNamespace(corpus=SimpleNamespace(sha256="0" * 64))
    spec = spec_for(tmp_path)
    study, created = open_study(spec)
    first = open_tracker(spec, study, data, created)
    assert created and study.user_attrs[PARENT_RUN_ATTR] == first.parent_id
    joined, created_again = open_study(spec)
    assert not created_again and open_tracker(spec, joined, data, created_again).parent_id == first.parent_id

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fresh = spec_for(elsewhere)  # the same study name in another storage: another study
    study, created = open_study(fresh)
    assert created and open_tracker(fresh, study, data, created).parent_id != first.parent_id
