"""The `criteria` command as a user runs it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from criteria import __version__

ROOT = Path(__file__).parents[1]


def test_version(cli):
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"criteria {__version__}"


def test_plugins_list_table_groups_by_kind(cli):
    result = cli("plugins", "list")
    assert result.returncode == 0, result.stderr
    for title in ("Optimizers", "LR schedulers", "PEFT methods", "Classification heads", "Losses",
                  "Hardware backends", "Samplers", "Pruners"):
        assert title in result.stdout
    assert re.search(r"cuda .*criteria 0\.1\.0.*(yes|no: needs)", result.stdout)


def test_plugins_list_json_has_ranges_and_availability(cli):
    payload = json.loads(cli("plugins", "list", "--json").stdout)
    lion = next(p for p in payload["plugins"] if p["name"] == "lion")
    assert lion["kind"] == "optimizer" and lion["available"] is True and lion["requires"] == "lion-pytorch"
    assert lion["params"]["lr"]["search"]["log"] is True
    only = json.loads(cli("plugins", "list", "--json", "--kind", "pruner").stdout)
    assert {p["kind"] for p in only["plugins"]} == {"pruner"}


def test_plugins_show(cli):
    result = cli("plugins", "show", "lora")
    assert result.returncode == 0, result.stderr
    for text in ("peft lora", "r", "choice(4, 8, 16, 32)", "uniform(0, 0.2)", "query_value"):
        assert text in result.stdout
    shared = cli("plugins", "show", "linear")  # a head and a scheduler share the name
    assert shared.returncode == 2 and "--kind" in shared.stderr
    assert cli("plugins", "show", "linear", "--kind", "head").returncode == 0
    typo = cli("plugins", "show", "lamda")
    assert typo.returncode == 2 and "did you mean 'lamb'" in typo.stderr


def test_validate_and_space(cli):
    spec = str(ROOT / "specs" / "study.toml")
    validate = cli("validate", spec)
    assert validate.returncode == 0 and "is valid" in validate.stdout
    space = cli("space", spec)
    assert space.returncode == 0, space.stderr
    dims = int(re.search(r"(\d+) dimensions", space.stdout).group(1))
    assert dims > 10
    assert "optimizer.lion.lr ~ loguniform(2e-05, 0.0002)" in space.stdout  # the spec's range
    assert "optimizer.lion.weight_decay ~ uniform(0, 0.3)" in space.stdout  # the plugin's declared range


def test_the_plugin_reference_in_docs_is_current(registry):
    from criteria.plugin.reference import render_reference
    from criteria.spec.schema import CORE_SECTIONS

    committed = (Path(__file__).parent.parent / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == render_reference(registry, core_sections=CORE_SECTIONS), (
        "docs/reference.md is out of date: run `criteria plugins reference -o docs/reference.md`"
    )
