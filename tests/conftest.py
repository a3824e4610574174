"""Shared fixtures: the real registry, and the fixture plugin distributions installed for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny_models.py

FIXTURES = Path(__file__).parent / "fixtures"
# Subprocesses get this long before a test calls them hung: a guard against hangs, never a speed
# check (CI machines are shared and slow; no test may depend on wall time).
HANG_GUARD_SECONDS = 1800


@pytest.fixture(scope="session")
def registry():
    from criteria.plugin.registry import Registry

    return Registry.from_entry_points()


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """Build and install the demo and broken plugin distributions (real wheels, real dist-info)
    into a private folder; put it on PYTHONPATH or sys.path to "have them installed"."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target),
         str(FIXTURES / "criteria-demo-plugin"), str(FIXTURES / "criteria-broken-plugin")],
        check=True,
    )
    return target


@pytest.fixture
def with_plugins(plugin_site, monkeypatch) -> Path:
    """The fixture distributions importable in this process (and its children)."""
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(plugin_site), os.environ.get("PYTHONPATH")])))
    return plugin_site


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A study's working folder: its storage, MLflow store and outputs land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def tiny_deberta(tmp_path_factory) -> Path:
    from tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-deberta"), "deberta-v2")


@pytest.fixture(autouse=True)
def _private_token_cache(tmp_path_factory, monkeypatch):
    """Tests never write to the user's cache; one cache per test session."""
    monkeypatch.setenv("CRITERIA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def cli():
    """Run the ``criteria`` command in a subprocess, as a user would."""

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "criteria.cli", *args],
            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", **(env or {})}, cwd=cwd,
            timeout=HANG_GUARD_SECONDS,
        )

    return run


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL server (as a user that may create databases and roles), from
    CRITERIA_TEST_POSTGRES_URL, which `.ci/run` sets after starting a throwaway server
    (.ci/postgres.sh). Without it the tests that need a server skip, except where
    CRITERIA_REQUIRE_POSTGRES=1 (CI): there they fail."""
    url = os.environ.get("CRITERIA_TEST_POSTGRES_URL")
    required = os.environ.get("CRITERIA_REQUIRE_POSTGRES") == "1"
    problem = None
    if not url:
        problem = "no PostgreSQL server: set CRITERIA_TEST_POSTGRES_URL (`.ci/run` starts one with .ci/postgres.sh)"
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            problem = "psycopg is not installed: pip install -e '.[postgres]'"
    if problem:
        if required:
            pytest.fail(f"CRITERIA_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    return url


@pytest.fixture
def postgres_database(postgres_url, request):
    """A fresh database on that server for one test: its URL (dropped afterwards)."""
    import re
    import uuid

    import psycopg

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
