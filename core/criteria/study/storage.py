"""Where a study lives: its Optuna RDB storage, opened with the spec's connection settings,
heartbeats and retries, and checked against what the spec optimises.

The default is a SQLite file in the working directory, which serves one worker. Several workers,
on one machine or many, share a PostgreSQL database (``pip install 'criteria[postgres]'``; a
``postgresql://`` URL uses psycopg 3) or any other database Optuna's RDB storage takes. The URL
may come from the environment (``storage = "env:CRITERIA_STORAGE"``).

Heartbeats are on for every storage: the worker running a trial records one every
``heartbeat_seconds``; a running trial without one for ``grace_seconds`` is failed by the next
worker that looks and queued again (Optuna's ``RetryFailedTrialCallback``, intermediate values
inherited), at most ``max_retries`` times. A failure to reach the storage becomes a
:class:`StorageError` that says the cause and the fix, without the password.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from criteria.errors import CriteriaError
from criteria.spec.load import Spec
from criteria.study.urls import redact, resolve_url, scrub, with_default_driver

__all__ = [
    "DEFAULT_STORAGE_FILE", "METRICS_ATTR", "PatientTrial", "RetryLostTrials", "StorageError", "StorageLost",
    "build_sampler", "explain", "heartbeat_ages", "is_connection_loss", "load_study", "open_study", "patiently", "serves_one_worker",
    "storage_url",
]

DEFAULT_STORAGE_FILE = "criteria-studies.db"
METRICS_ATTR = "criteria.metrics"  # the study's metric names, in the order of its directions
#: Drivers of the URL schemes we name in errors: (the module that is missing, how to install it).
_DRIVERS = {
    "psycopg": ("psycopg", "pip install 'criteria[postgres]'"),
    "psycopg2": ("psycopg2", "pip install psycopg2-binary (or drop +psycopg2: postgresql:// uses psycopg 3)"),
    "pymysql": ("pymysql", "pip install PyMySQL"),
    "mysqldb": ("MySQLdb", "pip install mysqlclient"),
}
_log = logging.getLogger(__name__)


class StorageError(CriteriaError):
    """The study storage cannot be used: the message says why and what to do."""


def storage_url(spec: Spec) -> str:
    """The spec's storage URL (``env:NAME`` read from the environment), with psycopg 3 as the
    PostgreSQL driver when the URL names none."""
    given = spec.study.storage
    return with_default_driver(resolve_url(given, "storage") if given else
                               f"sqlite:///{Path.cwd() / DEFAULT_STORAGE_FILE}")


def serves_one_worker(url: str) -> bool:
    """SQLite locks the whole file for every write: one worker at a time."""
    return url.startswith("sqlite:")


def load_study(spec: Spec, *, create: bool = True, read_only: bool = False,
               lost_trials: RetryLostTrials | None = None) -> Any:
    """Open (``create``: or create) the spec's study. ``read_only`` opens the database so that
    nothing can be written (``criteria study status``). ``lost_trials`` is called for a trial
    whose worker was lost, once it has been failed (default: queue it again)."""
    return open_study(spec, create=create, read_only=read_only, lost_trials=lost_trials)[0]


def open_study(spec: Spec, *, create: bool = True, read_only: bool = False,
               lost_trials: RetryLostTrials | None = None) -> tuple[Any, bool]:
    """:func:`load_study`, and whether this call created the study: the storage lets one of
    several workers starting together create it, which settles what only one of them should do
    (make the study's MLflow parent run)."""
    import optuna

    url = storage_url(spec)
    sampler = pruner = None
    if create:  # built outside the storage errors below, so a plugin's own error keeps its message
        sampler = _build_study_plugin(spec.sampler, seed=spec.study.seed)
        pruner = _build_study_plugin(spec.pruner, registry=spec.registry)
    # One metric: created exactly as single-objective studies always were.
    objectives = ({"directions": list(spec.study.directions)} if spec.study.multi_objective
                  else {"direction": spec.study.direction})
    created = False
    try:
        storage = _open_storage(spec, url, read_only, lost_trials or RetryLostTrials(spec.study.max_retries))
        if not create:
            study = optuna.load_study(study_name=spec.study.name, storage=storage)
        else:
            try:
                study = optuna.create_study(study_name=spec.study.name, storage=storage, sampler=sampler,
                                            pruner=pruner, **objectives)
                created = True
            except optuna.exceptions.DuplicatedStudyError:
                study = optuna.load_study(study_name=spec.study.name, storage=storage, sampler=sampler,
                                          pruner=pruner)
    except KeyError:
        raise CriteriaError(f"no study named {spec.study.name!r} in {redact(url)}; run `criteria run` first") from None
    except Exception as exc:  # SQLAlchemy and driver errors: say the cause and the fix
        raise explain(exc, url, spec) from None
    _check_objectives(study, spec, url, read_only)
    return study, created


def build_sampler(spec: Spec, seed: int) -> Any:
    """The spec's sampler seeded with ``seed`` (a worker's own)."""
    return _build_study_plugin(spec.sampler, seed=seed)


def _open_storage(spec: Spec, url: str, read_only: bool, lost_trials: RetryLostTrials) -> Any:
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    study = spec.study
    kwargs = dict(
        engine_kwargs=_engine_options(spec, url, read_only),
        heartbeat_interval=study.heartbeat_seconds, grace_period=study.grace_seconds,
    )
    storage_class = _storage_class()
    if read_only and _backend(url) == "sqlite" and not _sqlite_file(url).is_file():
        raise CriteriaError(f"no study storage at {_sqlite_file(url)}: run `criteria run {spec.path}` first, or "
                            "check [study] storage and the working directory")
    with _experimental_ok():
        if read_only:
            # Nothing to create, migrate or retry: a read-only opening must not write.
            return storage_class(_read_only_url(url), skip_table_creation=True, skip_compatibility_check=True,
                                 **kwargs)
        kwargs[_stale_callback_argument()] = lost_trials
        for attempt in range(3):
            try:
                return storage_class(url, **kwargs)
            except (IntegrityError, OperationalError, ProgrammingError) as exc:
                # Workers creating a new database's tables at once: all but one find them made
                # under them ("already exists", or PostgreSQL's duplicate type). Opening again
                # sees them.
                if attempt == 2 or not (isinstance(exc, IntegrityError) or "already exists" in str(exc)):
                    raise
                time.sleep(0.5 + attempt)


class RetryLostTrials:
    """Called with a trial whose worker stopped sending heartbeats, once it is failed: Optuna's
    ``RetryFailedTrialCallback`` queues it again (same parameters, intermediate values kept),
    without the user attributes in ``forget`` (those of the worker that was lost); then
    ``on_lost(trial)`` runs (the tracker closes the trial's MLflow run)."""

    def __init__(self, max_retries: int, forget: Iterable[str] = (),
                 on_lost: Callable[[Any], None] | None = None) -> None:
        import optuna

        # Optuna 4.9 renamed RetryFailedTrialCallback (deprecated since) to RetryHeartbeatStaleTrialCallback.
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) \
            or optuna.storages.RetryFailedTrialCallback
        with _experimental_ok():
            self.retry = retry(max_retry=max_retries, inherit_intermediate_values=True)
        self.forget = frozenset(forget)
        self.on_lost = on_lost

    def __call__(self, study: Any, trial: Any) -> None:
        import copy

        fresh = copy.deepcopy(trial)
        fresh.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in self.forget}
        self.retry(study, fresh)
        if self.on_lost is not None:
            self.on_lost(trial)


@contextmanager
def _experimental_ok() -> Iterator[None]:
    """Heartbeats and their retry callback are "experimental" in Optuna since 2.8, yet the way its
    documentation runs many workers: no warning at every start."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@lru_cache(maxsize=1)
def _storage_class() -> type:
    import optuna
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    class Storage(optuna.storages.RDBStorage):
        """Optuna's RDB storage whose heartbeat outlives a short loss of the database: a beat that
        cannot be written is skipped and the next one reconnects (the pool pre-pings), where the
        stock heartbeat thread would end for good and the live trial be retried elsewhere."""

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                super().record_heartbeat(trial_id)
            except (StorageInternalError, SQLAlchemyError) as exc:
                _log.warning("could not record a heartbeat (%s); retrying at the next one", type(exc).__name__)

    return Storage


def _stale_callback_argument() -> str:
    """Optuna 4.9 renamed ``failed_trial_callback`` (kept, deprecated) to ``heartbeat_stale_trial_callback``."""
    import inspect

    import optuna

    parameters = inspect.signature(optuna.storages.RDBStorage).parameters
    return "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in parameters else "failed_trial_callback"


def _backend(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def _engine_options(spec: Spec, url: str, read_only: bool) -> dict[str, Any]:
    """SQLAlchemy engine options: a small pool per worker (its trials and its heartbeat thread),
    connections tested before use, a bounded wait for a new one; nothing written when read-only."""
    study = spec.study
    backend = _backend(url)
    if backend == "sqlite":
        # For SQLite the timeout is how long a writer waits for the file lock.
        return {"connect_args": {"timeout": study.storage_connect_timeout_seconds}}
    options: dict[str, Any] = {
        "pool_size": study.storage_pool_size, "max_overflow": study.storage_pool_size,
        "pool_pre_ping": study.storage_pre_ping, "pool_recycle": 3600,
    }
    connect: dict[str, Any] = {"connect_timeout": study.storage_connect_timeout_seconds}
    if read_only and backend == "postgresql":
        connect["options"] = "-c default_transaction_read_only=on"
    elif read_only and backend == "mysql":
        connect["init_command"] = "SET SESSION TRANSACTION READ ONLY"
    options["connect_args"] = connect
    return options


def _sqlite_file(url: str) -> Path:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path.startswith("file:"):  # a SQLite URI filename: file:PATH?options
        path = path[len("file:"):].split("?", 1)[0]
    return Path(path)


def _read_only_url(url: str) -> str:
    """SQLite: the file opened read-only (``mode=ro``), so not even a journal is written."""
    if _backend(url) != "sqlite" or "mode=ro" in url:
        return url
    return f"sqlite:///file:{_sqlite_file(url)}?mode=ro&uri=true"


def _check_objectives(study: Any, spec: Spec, url: str, read_only: bool) -> None:
    """A resumed study must optimise what the spec says: Optuna keeps the stored directions, and
    the metric names label every value."""
    stored = [d.name.lower() for d in study.directions]
    metrics = study.user_attrs.get(METRICS_ATTR)
    wanted = list(spec.study.directions)
    if stored != wanted or (metrics is not None and metrics != list(spec.study.metrics)):
        what = ", ".join(f"{m} ({d})" for m, d in zip(metrics or ["?"] * len(stored), stored))
        raise CriteriaError(
            f"study {spec.study.name!r} in {redact(url)} optimises {what}, but the spec asks for "
            f"{', '.join(f'{m} ({d})' for m, d in zip(spec.study.metrics, wanted))}; give the study another "
            "[study] name (or storage) to optimise something else"
        )
    if metrics is None and not read_only:
        try:
            study.set_user_attr(METRICS_ATTR, list(spec.study.metrics))
        except Exception as exc:
            raise explain(exc, url, spec) from None


def _build_study_plugin(plugin: Any, **kwargs: Any) -> Any:
    try:
        return plugin.build(**kwargs)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CriteriaError(f"{plugin.kind} {plugin.name!r} cannot be built: {exc}") from None


def heartbeat_ages(study: Any) -> dict[int, float]:
    """Seconds since the last heartbeat of each running trial, by trial number, measured by the
    database's clock (as Optuna measures staleness). Read-only. Empty if the storage keeps none."""
    try:
        import sqlalchemy
        from optuna.storages._rdb import models  # Optuna's schema; it has no public reader for heartbeats

        backend = getattr(study._storage, "_backend", study._storage)
        with backend.engine.connect() as connection:
            now = connection.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar_one()
            rows = connection.execute(
                sqlalchemy.select(models.TrialModel.number, models.TrialHeartbeatModel.heartbeat)
                .join(models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                .where(models.TrialModel.study_id == study._study_id)
            ).all()
    except Exception:  # another storage kind, or Optuna moved its schema: ages are unknown
        return {}
    now = _naive(now)
    return {number: (now - _naive(beat)).total_seconds() for number, beat in rows}


def _naive(moment: Any) -> datetime:
    if isinstance(moment, str):  # SQLite returns CURRENT_TIMESTAMP as text
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=None)


class StorageLost(StorageError):
    """The storage stayed unreachable for longer than a worker waits for it."""


def patiently(call: Callable[[], Any], spec: Spec, url: str, sleep: Callable[[float], None] = time.sleep) -> Any:
    """``call()``, tried again while the database is unreachable (the pool reconnects once it is
    back), for up to ``[study] grace_seconds``: after that other workers count this worker as lost
    anyway. Then :class:`StorageLost`, saying that this worker stops and its trial runs elsewhere."""
    patience = spec.study.grace_seconds
    deadline = time.monotonic() + patience
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as exc:
            if not is_connection_loss(exc):
                raise
            if time.monotonic() >= deadline:
                cause = explain(exc, url, spec)
                raise StorageLost(
                    f"lost the study storage for over {patience} s (study.grace_seconds): {cause}. This worker "
                    "stops; a trial it was running is run again by a live worker once its heartbeat is that old "
                    "(or by the next `criteria run`)"
                ) from None
            _log.warning("lost the study storage (%s); trying again in %.1f s", type(exc).__name__, delay)
            sleep(delay)
            delay = min(delay * 2, 5.0)


class PatientTrial:
    """An ``optuna.Trial`` whose writes and reads of the storage outlast a short loss of the
    database (see :func:`patiently`); everything else is the trial's own."""

    _STORAGE_CALLS = frozenset({"should_prune", "set_user_attr", "suggest_float", "suggest_int",
                                "suggest_categorical"})

    def __init__(self, trial: Any, spec: Spec, url: str) -> None:
        self._trial, self._spec, self._url = trial, spec, url

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._trial, name)
        if name not in self._STORAGE_CALLS:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            return patiently(lambda: value(*args, **kwargs), self._spec, self._url)

        return call

    def report(self, value: float, step: int) -> None:
        import warnings

        # A trial run again after its worker was lost inherits the values it had reported;
        # reporting those steps again is expected, and Optuna keeps the first.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The reported value is ignored because this `step`")
            patiently(lambda: self._trial.report(value, step), self._spec, self._url)


def is_connection_loss(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the database going away, as opposed to a bug or bad data."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    for error in _chain(exc):
        if isinstance(error, OperationalError) or (isinstance(error, DBAPIError) and error.connection_invalidated):
            return True
    return False


def explain(exc: BaseException, url: str, spec: Spec | None = None) -> StorageError:
    """A :class:`StorageError` for ``exc`` raised while using the storage at ``url``: the cause
    and the fix, with no password in it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = redact(url)
    try:
        parsed = make_url(url)
    except Exception:
        parsed = None
    backend = _backend(url)
    where = _where(parsed, backend)
    timeout = spec.study.storage_connect_timeout_seconds if spec else None
    chain = list(_chain(exc))
    for error in chain:
        if isinstance(error, ImportError):
            return StorageError(_missing_driver(error, url, shown))
        if isinstance(error, NoSuchModuleError):
            return StorageError(
                f"the storage URL {shown} names a database or driver SQLAlchemy does not know; use "
                "sqlite:///path/to/file.db, postgresql://user@host:5432/db or mysql+pymysql://user@host/db"
            )
        if isinstance(error, ArgumentError):
            return StorageError(
                f"study.storage is not a database URL ({shown}); write it as "
                "postgresql://user:password@host:5432/database (the password best kept in an environment "
                'variable: storage = "env:CRITERIA_STORAGE") or sqlite:///path/to/file.db'
            )
    text = " ".join(str(getattr(e, "orig", None) or e) for e in chain).lower()
    detail = scrub(_first_line(chain), url)
    if "readonly database" in text or "read-only" in text or "read only" in text:
        fix = ("make the file and its folder writable, or run on a writable copy" if backend == "sqlite" else
               "point study.storage at the primary server, with a user allowed to write")
        return StorageError(
            f"the study storage {shown} is read-only ({detail}); `criteria study status` can read it, but "
            f"running trials writes to it: {fix}"
        )
    if "permission denied" in text or "insufficient privilege" in text:
        user = parsed.username if parsed is not None else None
        return StorageError(
            f"the database user {user!r} may not write to the study's tables at {where} ({detail}); "
            "`criteria study status` can read with it, but running trials needs a user that may write "
            "(the tables' owner, or one granted INSERT, UPDATE and DELETE on them)"
        )
    if backend == "sqlite" and "unable to open database file" in text:
        return StorageError(
            f"cannot open the SQLite file of {shown}: its folder does not exist or is not writable; create "
            "the folder or fix study.storage"
        )
    if "connection refused" in text:
        return StorageError(
            f"cannot connect to the study storage at {where}: connection refused (no database server listens "
            "there); start the server, or fix the host and port in study.storage"
        )
    if "server closed the connection" in text or "connection is closed" in text or "terminating connection" in text \
            or "could not receive data" in text or "connection reset" in text or "lost connection" in text:
        return StorageError(f"the connection to the study storage at {where} was lost ({detail})")
    if "could not translate host name" in text or "name or service not known" in text \
            or "nodename nor servname" in text or "name resolution" in text:
        return StorageError(f"cannot connect to the study storage: the host of {where} is unknown; fix the host in "
                            "study.storage")
    if "timeout expired" in text or "timed out" in text:
        return StorageError(
            f"no answer from the study storage at {where} within {timeout or '?'} s "
            "(study.storage_connect_timeout_seconds): the server is down, or a firewall or a wrong host is in the way"
        )
    if "password authentication failed" in text or "access denied" in text or "authentication failed" in text:
        user = parsed.username if parsed is not None else None
        return StorageError(
            f"the database at {where} refused the credentials of user {user!r}; check the user and password in "
            "study.storage (or in the environment variable it names)"
        )
    if "does not exist" in text and "database" in text:
        database = parsed.database if parsed is not None else "?"
        return StorageError(
            f"the database {database!r} does not exist on {where}; create it (for PostgreSQL: "
            f"createdb -h HOST -p PORT -U USER {database}) or fix the database name in study.storage"
        )
    if "too many clients" in text or "too many connections" in text:
        return StorageError(
            f"the database at {where} has no connection left ({detail}); lower study.storage_pool_size, raise "
            "the server's max_connections, or put a pooler or Optuna's gRPC storage proxy in front of it "
            "(docs/scale-out.md)"
        )
    return StorageError(f"cannot use the study storage {shown}: {detail or type(exc).__name__}")


def _missing_driver(error: ImportError, url: str, shown: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    driver = scheme.split("+", 1)[1] if "+" in scheme else {"postgresql": "psycopg2", "mysql": "mysqldb"}.get(scheme)
    module, install = _DRIVERS.get(driver or "", (getattr(error, "name", None) or "its driver", None))
    fix = install or f"pip install the Python driver for {scheme}"
    return f"the study storage {shown} needs the Python driver {module}, which is not installed here: {fix}"


def _where(parsed: Any, backend: str) -> str:
    if parsed is None or not parsed.host:
        return "the given host"
    port = parsed.port or {"postgresql": 5432, "mysql": 3306}.get(backend)
    return f"{parsed.host}:{port}" if port else parsed.host


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _first_line(chain: list[BaseException]) -> str:
    """The deepest error's first line: the driver's own words."""
    for error in reversed(chain):
        message = str(getattr(error, "orig", None) or error).strip()
        if message:
            return message.splitlines()[0][:300]
    return ""
