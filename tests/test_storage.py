"""The study storage: URLs from the environment, errors that say cause and fix without the
password, and read-only status. The PostgreSQL cases need a server (CRITERIA_TEST_POSTGRES_URL)."""

from __future__ import annotations

import hashlib
import socket
import sys
from pathlib import Path

import optuna
import pytest
from criteria.errors import CriteriaError
from criteria.plugin.registry import get_registry
from criteria.spec.errors import SpecError
from criteria.spec.load import load_spec
from criteria.study.status import study_status
from criteria.study.storage import METRICS_ATTR, load_study, storage_url
from criteria.study.workers import WORKER_ATTR, Worker

optuna.logging.set_verbosity(optuna.logging.WARNING)
PASSWORD = "hunter2-Zq8"


def spec_with(folder: Path, storage: str, name: str = "stored"):
    path = folder / f"{name}.toml"
    path.write_text(f"""
[study]
name = "{name}"
trials = 2
storage = "{storage}"
[optimizer]
use = ["adamw", "sgd"]
[sampler]
use = "random"
[pruner]
use = "none"
""")
    return load_spec(path, get_registry())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def error_of(spec, **kwargs) -> str:
    with pytest.raises(CriteriaError) as raised:
        load_study(spec, **kwargs)
    message = str(raised.value)
    assert PASSWORD not in message
    return message


def test_the_storage_url_can_come_from_the_environment(tmp_path, monkeypatch):
    spec = spec_with(tmp_path, "env:MY_STUDIES")
    monkeypatch.delenv("MY_STUDIES", raising=False)
    with pytest.raises(CriteriaError, match=r"environment variable MY_STUDIES, which is not set.*export MY_STUDIES="):
        storage_url(spec)
    monkeypatch.setenv("MY_STUDIES", f"postgresql://alice:{PASSWORD}@db.example:5432/studies")
    assert storage_url(spec) == f"postgresql+psycopg://alice:{PASSWORD}@db.example:5432/studies"  # psycopg 3
    assert spec.study.storage == "env:MY_STUDIES"  # the spec keeps the reference, not the URL
    with pytest.raises(SpecError, match="name the environment variable"):
        spec_with(tmp_path, "env:", name="unnamed")


def test_a_missing_driver_says_which_pip_command_installs_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if psycopg were not installed
    message = error_of(spec_with(tmp_path, f"postgresql://alice:{PASSWORD}@127.0.0.1:5432/studies"))
    assert "needs the Python driver psycopg" in message and "pip install 'criteria[postgres]'" in message
    assert "alice:***@127.0.0.1:5432" in message


def test_a_refused_connection_names_the_host_and_port(tmp_path):
    pytest.importorskip("psycopg")
    port = free_port()
    message = error_of(spec_with(tmp_path, f"postgresql://alice:{PASSWORD}@127.0.0.1:{port}/studies"))
    assert f"cannot connect to the study storage at 127.0.0.1:{port}: connection refused" in message
    assert "start the server, or fix the host and port" in message


def test_urls_that_are_not_databases_say_what_to_write(tmp_path):
    assert "SQLAlchemy does not know" in error_of(spec_with(tmp_path, "mongodb://db.example/studies"))
    assert "is not a database URL" in error_of(spec_with(tmp_path, "not a url", name="garbled"))


def test_a_read_only_sqlite_file_is_said_to_be_read_only(tmp_path):
    path = tmp_path / "studies.db"
    load_study(spec_with(tmp_path, f"sqlite:///{path}"))
    message = error_of(spec_with(tmp_path, f"sqlite:///file:{path}?mode=ro&uri=true", name="other"))
    assert "is read-only" in message and "`criteria study status` can read it" in message


def test_status_of_a_missing_sqlite_file_says_to_run_first(tmp_path):
    spec = spec_with(tmp_path, f"sqlite:///{tmp_path / 'nowhere.db'}")
    with pytest.raises(CriteriaError, match="no study storage at .*nowhere.db: run `criteria run"):
        study_status(spec)
    assert not (tmp_path / "nowhere.db").exists()


def test_status_reads_running_trials_and_never_writes(tmp_path, cli):
    path = tmp_path / "studies.db"
    spec = spec_with(tmp_path, f"sqlite:///{path}", name="status")
    # created as a study made before criteria kept its metric names: status must not add them
    optuna.create_study(study_name="status", storage=f"sqlite:///{path}", direction="maximize")
    study = load_study(spec, create=False, read_only=True)
    assert METRICS_ATTR not in study.user_attrs
    seen = []

    def objective(trial):
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr(WORKER_ATTR, Worker.here(2, 7).attrs())
        seen.append(study_status(spec))  # from another connection, while the trial runs
        return 0.5

    writer = optuna.load_study(study_name="status", storage=optuna.storages.RDBStorage(
        f"sqlite:///{path}", heartbeat_interval=60, grace_period=120))
    writer.optimize(objective, n_trials=1)
    running = seen[0].running
    assert [r.number for r in running] == [0] and running[0].worker.startswith("w2 ")
    assert running[0].heartbeat_age is not None and not running[0].lost

    before = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    status = study_status(spec)
    result = cli("study", "status", str(spec.path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 complete" in result.stdout
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before
    assert status.summary.counts["complete"] == 1 and not status.running
    assert METRICS_ATTR not in load_study(spec, create=False, read_only=True).user_attrs


@pytest.fixture
def study_owner_and_reader(postgres_url, postgres_database):
    """A database holding a study with one complete trial, and a role that may only read it."""
    import uuid

    import psycopg

    reader = "reader_" + uuid.uuid4().hex[:8]
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {reader} LOGIN PASSWORD '{PASSWORD}'")
    study = optuna.create_study(study_name="stored", storage=postgres_database.replace(
        "postgresql://", "postgresql+psycopg://"), direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")
    host = postgres_database.split("@", 1)[1]
    yield postgres_database, f"postgresql://{reader}:{PASSWORD}@{host}"
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        connection.execute(f"DROP OWNED BY {reader}")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"DROP ROLE {reader}")


def test_status_needs_only_a_user_that_may_read(tmp_path, study_owner_and_reader):
    _, reader = study_owner_and_reader
    spec = spec_with(tmp_path, reader)
    status = study_status(spec)  # a write would be refused by the database
    assert status.summary.counts["complete"] == 1 and status.summary.storage.count("***") == 1
    message = error_of(spec)  # running trials writes
    assert "may not write to the study's tables" in message and "criteria study status" in message


def test_postgres_errors_say_cause_and_fix(tmp_path, study_owner_and_reader):
    owner, reader = study_owner_and_reader
    user_host, database = reader.rsplit("/", 1)
    wrong = user_host.replace(PASSWORD, PASSWORD + "-wrong")
    message = error_of(spec_with(tmp_path, f"{wrong}/{database}"))
    assert "refused the credentials of user 'reader_" in message and PASSWORD + "-wrong" not in message
    message = error_of(spec_with(tmp_path, f"{user_host}/no_such_database"))
    assert "the database 'no_such_database' does not exist on 127.0.0.1:" in message and "createdb" in message
    read_only = owner + "?options=-c%20default_transaction_read_only%3Don"  # a standby, or a read-only server
    message = error_of(spec_with(tmp_path, read_only))
    assert "is read-only" in message and "point study.storage at the primary server" in message
