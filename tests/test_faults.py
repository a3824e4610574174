"""Failures at the edges: a full disk while keeping or exporting a model, a password that must
appear nowhere, and the load one trial puts on the database. Tiny model, a few posts."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from criteria.plugin.registry import get_registry
from criteria.spec.load import load_spec
from criteria.study.outcomes import MODEL_NOT_KEPT_ATTR
from criteria.study.report import ExportError, conclude, export_best
from criteria.study.runner import run_study
from criteria.study.storage import load_study
from recording import EpochRecorder
from test_scale_out import mlflow_runs, write_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def leftovers(folder: Path) -> list[Path]:
    """Temporary folders a failed write must not leave behind."""
    return [p for p in folder.rglob(".*") if ".partial-" in p.name or ".old-" in p.name]


@pytest.fixture
def sqlite_spec(tmp_path, tiny_bert, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return load_spec(write_spec(tmp_path, tiny_bert, trials=2, storage=f"sqlite:///{tmp_path / 'studies.db'}"),
                     get_registry())


def test_a_full_disk_while_keeping_a_model_leaves_the_trial_complete_with_the_reason(sqlite_spec, tmp_path,
                                                                                      monkeypatch):
    def half_written(result, data, spec, config, folder, **metadata):
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "encoder.safetensors").write_bytes(b"\0" * 1024)
        disk_full()

    import criteria.study.objective as objective

    save_run_model = objective.save_run_model
    monkeypatch.setattr(objective, "save_run_model", half_written)
    out = tmp_path / "out"
    study, summary, data, tracker = run_study(sqlite_spec, output=out)
    trials = study.get_trials(deepcopy=False)
    assert summary.counts["complete"] == 2 and summary.export_here
    reasons = [t.user_attrs.get(MODEL_NOT_KEPT_ATTR) for t in trials]
    assert reasons[0].startswith("no space left on the device of ")  # the first trial is the best so far
    assert not list((out / "kept").glob("trial-*")) and not leftovers(out)
    _, children = mlflow_runs(tmp_path, "scale-out")
    assert {r.info.status for r in children} == {"FINISHED"}
    assert any(r.data.tags.get(MODEL_NOT_KEPT_ATTR) for r in children)

    monkeypatch.setattr(objective, "save_run_model", save_run_model)  # room again: the export retrains the best
    export = conclude(study, sqlite_spec, data, out, tracker)
    assert json.loads((export.folder / "model" / "criteria_model.json").read_text())["trial"] == summary.best_trial
    parents, _ = mlflow_runs(tmp_path, "scale-out")
    assert parents[0].info.status == "FINISHED"


def test_a_full_disk_while_exporting_leaves_the_previous_export_and_closes_the_run(sqlite_spec, tmp_path,
                                                                                     monkeypatch):
    out = tmp_path / "out"
    study, summary, data, tracker = run_study(sqlite_spec, output=out)
    first = export_best(study, sqlite_spec, data, out, tracker)
    before = {p.relative_to(first.folder): p.read_bytes() for p in first.folder.rglob("*") if p.is_file()}

    # the model is copied into the new export, then the disk fills while the reports are written
    monkeypatch.setattr("criteria.study.report.confusion_matrix_figure", disk_full)
    with pytest.raises(ExportError) as raised:
        conclude(study, sqlite_spec, data, out, tracker)
    message = str(raised.value)
    assert "no space left on the device" in message and "Nothing was half-written" in message
    assert f"criteria export {sqlite_spec.path}" in message
    after = {p.relative_to(first.folder): p.read_bytes() for p in first.folder.rglob("*") if p.is_file()}
    assert after == before and not leftovers(out)
    parents, children = mlflow_runs(tmp_path, "scale-out")
    assert parents[0].info.status == "FAILED" and {r.info.status for r in children} == {"FINISHED"}
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["COMPLETE", "COMPLETE"]


@pytest.fixture
def database_with_password(postgres_url):
    """A role with a password of its own and a database it owns, for this test alone."""
    import psycopg

    name = "secret_" + uuid.uuid4().hex[:8]
    password = "pw-" + uuid.uuid4().hex
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        for database in (name, name + "_mlflow"):
            connection.execute(f"CREATE DATABASE {database} OWNER {name}")
    host = postgres_url.split("@", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql://{name}:{password}@{host}", name, password
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        for database in (name, name + "_mlflow"):
            connection.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        connection.execute(f"DROP ROLE {name}")


def test_the_password_appears_nowhere(tmp_path, tiny_bert, database_with_password):
    server, name, password = database_with_password
    spec_file = write_spec(tmp_path, tiny_bert, trials=4)
    text = spec_file.read_text().replace('storage = "env:CRITERIA_STORAGE"',
                                         'storage = "env:CRITERIA_STORAGE"\ntracking_uri = "env:CRITERIA_TRACKING"')
    spec_file.write_text(text)
    env = {"CRITERIA_STORAGE": f"{server}/{name}", "CRITERIA_TRACKING": f"{server}/{name}_mlflow"}

    def criteria(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "criteria.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, env={**os.environ, "COLUMNS": "200", **env})

    said = [criteria("run", str(spec_file), "--workers", "2"), criteria("study", "status", str(spec_file)),
            criteria("export", str(spec_file))]
    assert all(r.returncode == 0 for r in said), [r.stdout[-2000:] + r.stderr[-2000:] for r in said]
    assert "***@" in said[0].stdout  # the storage is shown, redacted
    env["CRITERIA_STORAGE"] = env["CRITERIA_STORAGE"].replace(password, password + "x")  # a wrong password
    said.append(criteria("run", str(spec_file)))
    env["CRITERIA_STORAGE"] = f"{server}/{name}".replace(name + ":", "nobody:")
    said.append(criteria("study", "status", str(spec_file)))
    assert said[-2].returncode == 2 and said[-1].returncode == 2 and "refused the credentials" in said[-2].stderr

    places = {f"console {i}": r.stdout + r.stderr for i, r in enumerate(said)}
    for path in tmp_path.rglob("*"):  # outputs, kept models, spec.resolved.json, MLflow artifacts, logs
        if path.is_file():
            places[str(path)] = path.read_bytes().decode("latin-1")
    places.update(mlflow_and_optuna_records(env["CRITERIA_TRACKING"], f"{server}/{name}"))
    assert len([p for p in places if p.endswith("spec.resolved.json")]) >= 2  # exported and kept
    assert [where for where, content in places.items() if password in content] == []


def mlflow_and_optuna_records(tracking: str, storage: str) -> dict[str, str]:
    """Every MLflow param, tag and metric key, and every row of the Optuna database, as text."""
    import psycopg
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.replace("postgresql://", "postgresql+psycopg://"))
    records = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            records[f"mlflow run {run.info.run_id}"] = json.dumps(
                [run.data.params, run.data.tags, sorted(run.data.metrics), run.info.artifact_uri])
    with psycopg.connect(storage) as connection:
        for (table,) in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall():
            rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
            records[f"optuna table {table}"] = repr(rows)
    return records


def test_database_load_of_one_trial(tmp_path, tiny_bert, postgres_database, monkeypatch, record_property):
    """Counts the SQL statements a worker sends per trial (2 epochs, 5 parameters, heartbeat every
    second), as docs/scale-out.md quotes them."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRITERIA_STORAGE", postgres_database)
    spec = load_spec(write_spec(tmp_path, tiny_bert, trials=4, epochs=2), get_registry())
    load_study(spec)  # created beforehand: what follows is the cost of running trials
    statements: list[str] = []

    def count(connection, cursor, statement, *args):
        statements.append(" ".join(statement.split()))

    marks = []
    event.listen(Engine, "before_cursor_execute", count)
    try:
        run_study(spec, track=False, progress=EpochRecorder(on_trial=lambda trial: marks.append(len(statements))))
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    per_trial = [b - a for a, b in zip(marks, marks[1:])]  # from one trial's end to the next one's
    cycle = statements[marks[1]:marks[2]]
    kinds = Counter(re.match(r"(\w+)", s).group(1) for s in cycle)
    heartbeats = sum("trial_heartbeats" in s and not s.startswith("SELECT") for s in cycle)
    record_property("statements_per_trial", per_trial)
    print(f"\nstatements per trial: {per_trial}; one of them by kind: {dict(kinds)}, heartbeat writes {heartbeats}")
    assert len(per_trial) == 3 and all(20 <= n <= 150 for n in per_trial)
    assert heartbeats >= 1 and kinds["INSERT"] >= 5  # the trial, its parameters, its reports, its value


class Relay:
    """A TCP relay to the database that a test can cut (every connection dropped, new ones closed
    at once) and restore: a network outage, from the worker's side."""

    def __init__(self, host: str, port: int) -> None:
        import socket
        import threading

        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.sockets: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            client, _ = self.listener.accept()
            if not self.up.is_set():
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, target) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for end in (source, target):
            try:
                end.close()
            except OSError:
                pass

    def cut(self) -> None:
        import socket

        self.up.clear()
        for end in self.sockets:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sockets.clear()


def relayed_spec(tmp_path, tiny_bert, postgres_database, monkeypatch, grace: int):
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_database)
    relay = Relay(parts.hostname, parts.port)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRITERIA_STORAGE", postgres_database.replace(f":{parts.port}/", f":{relay.port}/"))
    spec_file = write_spec(tmp_path, tiny_bert, trials=3, epochs=2)
    spec_file.write_text(spec_file.read_text().replace("grace_seconds = 5", f"grace_seconds = {grace}"))
    return load_spec(spec_file, get_registry()), relay


def test_a_worker_rides_out_a_short_database_outage(tmp_path, tiny_bert, postgres_database, monkeypatch):
    import threading

    spec, relay = relayed_spec(tmp_path, tiny_bert, postgres_database, monkeypatch, grace=60)

    def outage_in_the_first_trial(number, epoch):
        if number == 0 and epoch.epoch == 1 and relay.up.is_set():
            relay.cut()  # the database is gone for the rest of this epoch's reports, then back
            threading.Timer(2.0, relay.up.set).start()

    study, summary, _, _ = run_study(spec, track=False, progress=EpochRecorder(outage_in_the_first_trial))
    assert not relay.up.is_set() or summary.counts["complete"] == 3
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["COMPLETE"] * 3
    assert len(study.get_trials(deepcopy=False)[0].intermediate_values) == 2  # reported through the outage


def test_a_worker_that_loses_the_database_for_good_stops_with_a_clear_error(tmp_path, tiny_bert, postgres_database,
                                                                             monkeypatch):
    from urllib.parse import urlsplit

    from criteria.study.storage import StorageLost

    spec, relay = relayed_spec(tmp_path, tiny_bert, postgres_database, monkeypatch, grace=3)

    def outage(number, epoch):
        relay.cut()

    with pytest.raises(StorageLost) as raised:
        run_study(spec, track=False, progress=EpochRecorder(outage))
    message = str(raised.value)
    assert "lost the study storage for over 3 s" in message and "run again by a live worker" in message
    assert f"the connection to the study storage at 127.0.0.1:{relay.port} was lost" in message
    assert urlsplit(postgres_database).password not in message
