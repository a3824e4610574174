"""The worked example of docs/plugins.md, examples/criteria-schedulefree, installed as a user
would install it (a real wheel) and tested with its own tests."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.skipif(importlib.util.find_spec("schedulefree") is None,
                    reason="needs schedulefree (pip install -e '.[dev]')")
def test_the_schedulefree_example_installs_and_passes_its_tests(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(EXAMPLES / "criteria-schedulefree")],
                   check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                             str(EXAMPLES / "criteria-schedulefree" / "tests")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "5 passed" in result.stdout and "skipped" not in result.stdout
