"""Workers: the processes that run a study's trials.

Every ``criteria run`` is a worker; any number of them, on any machines that reach the study's
storage, share one study. ``criteria run --workers N`` starts N of them on this machine, each
pinned to its own GPU (or its own share of the CPU cores), and streams their output.

A worker has an index, which seeds its sampler: worker 0 uses the spec's seed (a study run by
one worker samples exactly as before), worker k a seed drawn from (seed, k), so no two workers
propose the same configurations and rerunning a worker reproduces its draws. The index comes from
``--worker-index``, else from ``CRITERIA_WORKER_INDEX``, else from the launcher (a Slurm array
task, a Kubernetes indexed Job), else it is 0, or a free one when a worker 0 is running already
(:func:`free_index`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from criteria.errors import CriteriaError
from criteria.hardware import cuda_devices

__all__ = [
    "INDEX_VARIABLES", "WORKER_ATTR", "LocalWorker", "Worker", "index_from_environment", "local_worker_count",
    "free_index", "index_taken", "local_workers", "process_is_gone", "run_worker_processes", "worker_label", "worker_seed",
]

#: The trial user attribute naming the worker that runs (or ran) it: index, host, pid, seed.
WORKER_ATTR = "criteria.worker"
#: Where a worker finds its index when ``--worker-index`` is not given, in this order.
INDEX_VARIABLES = ("CRITERIA_WORKER_INDEX", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX")


def worker_seed(study_seed: int, index: int) -> int:
    """Worker 0 keeps the study's seed; worker k gets a seed drawn from (seed, k), so seeds of
    neighbouring studies (seed 13 worker 1, seed 14 worker 0) do not coincide."""
    if index == 0:
        return study_seed
    import numpy as np

    return int(np.random.SeedSequence([study_seed, index]).generate_state(1)[0])


def index_from_environment() -> int | None:
    for name in INDEX_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit():
                raise CriteriaError(f"the worker index in {name} must be a whole number >= 0, not {value!r}")
            return int(value)
    return None


def _pid_namespace() -> int | None:
    """Processes are only comparable by pid inside one pid namespace (containers have their own)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


@dataclass(frozen=True)
class Worker:
    """This process as a worker of a study."""

    index: int
    seed: int
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    pid_namespace: int | None = field(default_factory=_pid_namespace)

    @classmethod
    def here(cls, index: int, study_seed: int) -> Worker:
        return cls(index=index, seed=worker_seed(study_seed, index))

    @property
    def label(self) -> str:
        return f"w{self.index} {self.host}:{self.pid}"

    def attrs(self) -> dict[str, Any]:
        """What a trial records about the worker running it (:data:`WORKER_ATTR`)."""
        return {"index": self.index, "host": self.host, "pid": self.pid, "pid_namespace": self.pid_namespace,
                "seed": self.seed}

    def tags(self) -> dict[str, str]:
        """MLflow tags of the trial runs this worker makes."""
        return {"criteria.worker": self.label, "criteria.host": self.host, "criteria.worker_index": str(self.index)}

    def ran(self, trial: Any) -> bool:
        """Whether this very process ran ``trial`` (a FrozenTrial)."""
        attrs = trial.user_attrs.get(WORKER_ATTR) or {}
        return (attrs.get("host"), attrs.get("pid"), attrs.get("pid_namespace")) == (
            self.host, self.pid, self.pid_namespace)


def free_index(trials: Sequence[Any], taken: bool = False) -> int:
    """The index of a worker started without one: 0, unless a worker of index 0 is running a trial
    of the study right now (a second machine joined without an index), or ``taken``: then one
    above every index the study has seen, so that its sampler's seed differs."""
    from optuna.trial import TrialState

    seen = [attrs["index"] for t in trials if (attrs := t.user_attrs.get(WORKER_ATTR))]
    zero_running = any((t.user_attrs.get(WORKER_ATTR) or {}).get("index") == 0
                       for t in trials if t.state == TrialState.RUNNING)
    return max(seen, default=0) + 1 if zero_running or taken else 0


def index_taken(trials: Sequence[Any], number: int, worker: Worker) -> bool:
    """Whether another process, running a trial numbered below ``number``, has ``worker``'s index."""
    from optuna.trial import TrialState

    for trial in trials:
        attrs = trial.user_attrs.get(WORKER_ATTR)
        if trial.state == TrialState.RUNNING and trial.number < number and attrs and attrs["index"] == worker.index \
                and not worker.ran(trial):
            return True
    return False


def worker_label(trial: Any) -> str:
    """``w1 host:pid`` for the worker recorded on ``trial``, ``-`` when none is."""
    attrs = trial.user_attrs.get(WORKER_ATTR)
    return f"w{attrs['index']} {attrs['host']}:{attrs['pid']}" if attrs else "-"


def process_is_gone(trial: Any) -> bool:
    """Whether the worker recorded on a running ``trial`` is a process of this machine (same
    host, same pid namespace) that no longer exists: its trial is lost now, without waiting
    for its heartbeat to go stale. False whenever that cannot be known for sure."""
    attrs = trial.user_attrs.get(WORKER_ATTR)
    namespace = _pid_namespace()
    if not attrs or namespace is None or attrs.get("pid") == os.getpid() \
            or (attrs.get("host"), attrs.get("pid_namespace")) != (socket.gethostname(), namespace):
        return False
    pid = int(attrs["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OSError, ValueError):
        return False  # exists under another user, or cannot tell
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process whose parent has not reaped it yet still answers signal 0."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"  # the field after the command name


def local_worker_count(value: str) -> int:
    """``--workers``: a number, or ``auto`` (one per visible GPU; one without a GPU)."""
    if value.strip().lower() == "auto":
        return max(1, len(cuda_devices()))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise CriteriaError(f"--workers takes a number >= 1 or auto, not {value!r}")
    return count


@dataclass(frozen=True)
class LocalWorker:
    """A worker process to start on this machine: its index, the GPU it sees, its CPU cores."""

    index: int
    gpu: str | None
    cores: tuple[int, ...]

    def environment(self) -> dict[str, str]:
        env = {"CRITERIA_WORKER_INDEX": str(self.index), "PYTHONUNBUFFERED": "1"}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env

    def describe(self) -> str:
        cores = f"cores {self.cores[0]}-{self.cores[-1]}" if len(self.cores) > 1 else f"core {self.cores[0]}"
        return f"w{self.index}: " + (f"GPU {self.gpu}, " if self.gpu is not None else "") + cores


def local_workers(count: int, first_index: int = 0) -> list[LocalWorker]:
    """``count`` workers for this machine: worker i sees one GPU (round robin over the visible
    ones) and a disjoint share of the CPU cores this process may use (shared round robin when
    there are more workers than cores), so that no two workers fight over one device."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpus = [g.strip() for g in visible.split(",") if g.strip()] if visible else \
        [str(d.index) for d in cuda_devices()]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    share = max(1, len(cores) // count)
    workers = []
    for i in range(count):
        mine = cores[i * share:(i + 1) * share] if count <= len(cores) else [cores[i % len(cores)]]
        workers.append(LocalWorker(first_index + i, gpus[i % len(gpus)] if gpus else None, tuple(mine)))
    return workers


def run_worker_processes(workers: Sequence[LocalWorker], command: Callable[[LocalWorker], list[str]],
                         on_line: Callable[[LocalWorker, str], None]) -> dict[int, int]:
    """Run ``command(worker)`` for each worker, pinned to its GPU and cores, passing every line
    it prints to ``on_line``; wait for all of them and return each one's exit code by index.

    Ctrl-C reaches the workers (they mark their running trial interrupted and exit); this waits
    for them, then raises KeyboardInterrupt. A second Ctrl-C kills them.
    """
    processes: dict[int, subprocess.Popen] = {}
    readers = []
    lock = threading.Lock()

    def forward(worker: LocalWorker, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with lock:
                on_line(worker, line.rstrip("\n"))
        process.wait()  # reap it as soon as it ends, so that no one takes it for alive

    try:
        for worker in workers:
            process = subprocess.Popen(
                command(worker), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                env={**os.environ, **worker.environment()}, errors="replace",
            )
            processes[worker.index] = process
            if hasattr(os, "sched_setaffinity"):
                try:  # before the worker sizes its thread pools from its affinity
                    os.sched_setaffinity(process.pid, worker.cores)
                except OSError:
                    pass
            reader = threading.Thread(target=forward, args=(worker, process), daemon=True)
            reader.start()
            readers.append(reader)
        for process in processes.values():
            process.wait()
    except KeyboardInterrupt:
        _stop(processes.values())
        raise
    for reader in readers:
        reader.join()
    return {index: process.returncode for index, process in processes.items()}


def _stop(processes: Any) -> None:
    """Ask each worker still running to stop as after Ctrl-C; kill them on a second Ctrl-C."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        try:
            process.send_signal(signal.SIGINT)
        except OSError:
            pass
    try:
        for process in running:
            process.wait()
    except KeyboardInterrupt:
        for process in running:
            if process.poll() is None:
                process.kill()
        raise
