"""`criteria dashboard SPEC`: optuna-dashboard on the study's storage, read through its HTTP API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import optuna
import pytest

pytest.importorskip("optuna_dashboard", reason="needs the dashboard extra: pip install -e '.[dashboard]'")


def test_the_dashboard_serves_the_study_of_the_spec(workdir):
    spec = workdir / "study.toml"
    spec.write_text('[study]\nname = "watched"\n')
    storage = f"sqlite:///{workdir / 'criteria-studies.db'}"  # the spec's default storage, in its folder
    study = optuna.create_study(study_name="watched", storage=storage, direction="maximize")
    for value in (0.5, 0.7):
        trial = study.ask()
        trial.suggest_float("optimizer.adamw.lr", 1e-5, 1e-3, log=True)
        study.tell(trial, value)

    server = subprocess.Popen([sys.executable, "-m", "criteria.cli", "dashboard", str(spec), "--port", "0"],
                              cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "COLUMNS": "200"})
    try:
        lines = []
        for line in server.stdout:  # ends if the server exits; its stderr then says why
            lines.append(line)
            if line.startswith("serving on "):
                break
        assert lines and lines[-1].startswith("serving on "), "".join(lines) + server.stderr.read()
        url = lines[-1].split()[-1]
        assert url.startswith("http://127.0.0.1:") and "/dashboard/studies/" in url
        base = url.split("/dashboard/")[0]

        with urllib.request.urlopen(f"{base}/api/studies", timeout=60) as response:
            studies = json.load(response)["study_summaries"]
        [watched] = [s for s in studies if s["study_name"] == "watched"]
        assert url.endswith(f"/studies/{watched['study_id']}")
        with urllib.request.urlopen(f"{base}/api/studies/{watched['study_id']}", timeout=60) as response:
            detail = json.load(response)
        assert [t["values"] for t in detail["trials"]] == [[0.5], [0.7]]
        assert detail["trials"][1]["params"][0]["name"] == "optimizer.adamw.lr"
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_dashboard_says_when_the_study_is_not_there_yet(workdir):
    from criteria.plugin.registry import Registry
    from criteria.spec.load import load_spec
    from criteria.study.dashboard import open_dashboard

    spec = workdir / "study.toml"
    spec.write_text('[study]\nname = "not-yet"\n')
    dashboard = open_dashboard(load_spec(spec, Registry.from_entry_points(allowed=[])), port=0)
    try:
        assert dashboard.study_id is None and dashboard.study_url is None
        assert dashboard.url.startswith("http://127.0.0.1:")
    finally:
        dashboard.server.server_close()
