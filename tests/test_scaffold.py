"""`criteria plugins new KIND NAME`: for every kind, a package that builds and installs (a real
wheel, offline), is listed by `criteria plugins list` under its own distribution, and whose own
generated tests pass against the installed package."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from criteria.plugin.kinds import KINDS
from criteria.plugin.scaffold import kinds_with_templates


def test_every_kind_has_a_template():
    assert kinds_with_templates() == [kind.name for kind in KINDS]


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory):
    """One generated package per kind, installed together into a private site folder."""
    root = tmp_path_factory.mktemp("scaffold")
    env = {**os.environ, "COLUMNS": "200"}
    folders = {}
    for kind in KINDS:
        name = f"made_{kind.name}"
        made = subprocess.run([sys.executable, "-m", "criteria.cli", "plugins", "new", kind.name, name],
                              cwd=root, capture_output=True, text=True, env=env)
        assert made.returncode == 0, made.stderr
        folders[kind.name] = root / f"criteria-made-{kind.name}"
        assert f"pip install -e criteria-made-{kind.name}" in made.stdout
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), *map(str, folders.values())], check=True)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return root, folders, env


def test_each_generated_package_is_listed_with_its_distribution(scaffolded):
    root, folders, env = scaffolded
    listed = subprocess.run([sys.executable, "-m", "criteria.cli", "plugins", "list", "--json"],
                            capture_output=True, text=True, env=env, cwd=root)
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    assert payload["broken"] == []
    made = {p["name"]: p for p in payload["plugins"] if p["name"].startswith("made_")}
    assert set(made) == {f"made_{kind}" for kind in folders}
    for kind in folders:
        record = made[f"made_{kind}"]
        assert (record["kind"], record["distribution"], record["version"]) == (
            kind, f"criteria-made-{kind}", "0.1.0")
        assert record["available"] and record["params"]
    # per-trial kinds declare a default search range for the study to use
    assert made["made_optimizer"]["params"]["lr"]["search"]["log"] is True


def test_each_generated_package_passes_its_own_tests(scaffolded):
    root, folders, env = scaffolded
    tests = [str(folder / "tests") for folder in folders.values()]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                             *tests], capture_output=True, text=True, env=env, cwd=root)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{3 * len(folders)} passed" in result.stdout


def test_new_refuses_a_taken_name_an_unknown_kind_and_a_used_folder(cli, tmp_path):
    taken = cli("plugins", "new", "optimizer", "adamw", cwd=tmp_path)
    assert taken.returncode == 2 and "already exists (criteria" in taken.stderr and "Traceback" not in taken.stderr
    kind = cli("plugins", "new", "optimiser", "mine", cwd=tmp_path)
    assert kind.returncode == 2 and "did you mean 'optimizer'" in kind.stderr
    (tmp_path / "criteria-mine" / "x").mkdir(parents=True)
    used = cli("plugins", "new", "loss", "mine", cwd=tmp_path)
    assert used.returncode == 2 and "already exists and is not empty" in used.stderr
