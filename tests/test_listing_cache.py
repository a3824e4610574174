"""`criteria plugins list` answers from a cache that must never show a stale answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from criteria.cli import _plugins_list_args
from criteria.plugin import listing as listing_cache
from criteria.plugin.base import Availability
from criteria.plugin.listing import load_listing
from criteria.plugin.registry import get_registry


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache of its own per test, and a registry built for this test's sys.path."""
    monkeypatch.setenv("CRITERIA_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("CRITERIA_LISTING_CACHE", "CRITERIA_LOAD_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    get_registry.cache_clear()
    yield tmp_path / "cache" / "listing"
    get_registry.cache_clear()


def record(listing, kind, name):
    return next(r for r in listing.plugins if (r["kind"], r["name"]) == (kind, name))


def test_a_hit_is_the_live_listing(fresh_cache):
    first = load_listing()
    assert not first.cached and len(list(fresh_cache.glob("*.json"))) == 1
    second = load_listing()
    assert second.cached
    live = listing_cache.build_listing()[0]
    assert second.plugins == first.plugins == live.plugins
    assert second.kinds == first.kinds == live.kinds
    assert not second.broken and len(second.plugins) >= 60


def test_the_cli_prints_the_same_from_the_cache_and_imports_no_plugin(cli):
    live_env = {"CRITERIA_LISTING_CACHE": "0"}
    listing = ("plugins", "list")
    for args in (listing, (*listing, "--json"), (*listing, "--json", "-k", "loss")):
        live = cli(*args, env=live_env)
        built, cached = cli(*args), cli(*args)
        assert live.returncode == built.returncode == cached.returncode == 0, live.stderr + cached.stderr
        assert live.stdout == built.stdout == cached.stdout
    code = (
        "import sys\n"
        "from criteria.cli import main\n"
        "sys.argv = ['criteria', 'plugins', 'list']\n"
        "main()\n"
        "loaded = [m for m in ('pydantic', 'pluggy', 'criteria_builtins.optimizers') if m in sys.modules]\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in out.stderr, out.stderr


def test_a_changed_plugin_module_invalidates(with_plugins, monkeypatch):
    monkeypatch.setenv("CRITERIA_LOAD_PLUGINS", "criteria-demo-plugin")
    assert not load_listing().cached
    assert load_listing().cached
    module = with_plugins / "criteria_demo_plugin.py"
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    again = load_listing()
    assert not again.cached and record(again, "optimizer", "demo_sgd")["version"] == "1.2.3"
    assert load_listing().cached


def test_the_allow_list_is_part_of_the_key(with_plugins, monkeypatch):
    monkeypatch.setenv("CRITERIA_LOAD_PLUGINS", "criteria-demo-plugin")
    assert "demo_sgd" in {r["name"] for r in load_listing().plugins}
    monkeypatch.setenv("CRITERIA_LOAD_PLUGINS", "")
    get_registry.cache_clear()
    none = load_listing()
    assert not none.cached and "demo_sgd" not in {r["name"] for r in none.plugins}
    monkeypatch.setenv("CRITERIA_LOAD_PLUGINS", "criteria-demo-plugin")
    back = load_listing()
    assert back.cached and "demo_sgd" in {r["name"] for r in back.plugins}


def test_installing_or_upgrading_a_distribution_invalidates(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    load_listing()
    assert load_listing().cached
    (site / "some_optional_backend-1.0.dist-info").mkdir()
    assert not load_listing().cached
    assert load_listing().cached
    (site / "some_optional_backend-1.0.dist-info").rename(site / "some_optional_backend-1.1.dist-info")
    assert not load_listing().cached


def test_availability_is_the_answer_of_the_machine_that_lists(monkeypatch):
    cuda = get_registry().get("backend", "cuda").cls
    before = record(load_listing(), "backend", "cuda")
    assert load_listing().cached
    # The GPU goes away: the device nodes change, and so does the plugin's own answer.
    gone = Availability(False, "test: no GPU any more")
    monkeypatch.setattr(cuda, "available", classmethod(lambda cls: gone))
    real_listdir = listing_cache._listdir
    monkeypatch.setattr(listing_cache, "_listdir",
                        lambda path: real_listdir(path) + (["nvidia-test-gone"] if path == "/dev" else []))
    after = load_listing()
    assert not after.cached
    assert before["reason"] != "test: no GPU any more"
    assert record(after, "backend", "cuda")["reason"] == "test: no GPU any more"


def test_the_key_covers_what_builtin_availability_reads(monkeypatch):
    base = listing_cache.fingerprint()
    for name, value in (("CUDA_VISIBLE_DEVICES", "7"), ("CRITERIA_SOMETHING_NEW", "1")):
        monkeypatch.setenv(name, value)
        assert listing_cache.fingerprint() != base
        monkeypatch.delenv(name)
    assert listing_cache.fingerprint() == base
    mac = os.uname_result(("Darwin", "host", "23.0", "v", "arm64"))
    monkeypatch.setattr(listing_cache.os, "uname", lambda: mac)
    assert listing_cache.fingerprint()["machine"] != base["machine"]


def test_a_plugin_can_opt_out_of_cached_availability(monkeypatch, fresh_cache):
    lion = get_registry().get("optimizer", "lion").cls
    monkeypatch.setattr(lion, "cache_availability", False)
    assert not load_listing().cached and not fresh_cache.exists()
    expired = Availability(False, "test: license expired")
    monkeypatch.setattr(lion, "available", classmethod(lambda cls: expired))
    assert record(load_listing(), "optimizer", "lion")["reason"] == "test: license expired"


def test_broken_plugins_are_reported_and_never_cached(with_plugins, fresh_cache):
    listing = load_listing()
    assert listing.broken and all(b["distribution"] == "criteria-broken-plugin" for b in listing.broken)
    assert not fresh_cache.exists()
    assert load_listing().broken


@pytest.mark.parametrize("damage", ["{not json", "", '{"format": 1}', "[]", '{"format": 1, "key": null}'])
def test_a_damaged_cache_is_rebuilt(damage, fresh_cache):
    good = load_listing()
    [path] = fresh_cache.glob("*.json")
    path.write_text(damage, encoding="utf-8")
    rebuilt = load_listing()
    assert not rebuilt.cached and rebuilt.plugins == good.plugins
    assert json.loads(path.read_text(encoding="utf-8"))["plugins"] == good.plugins
    assert load_listing().cached


def test_refresh_and_the_off_switch(monkeypatch, fresh_cache):
    load_listing()
    lion = get_registry().get("optimizer", "lion").cls
    monkeypatch.setattr(lion, "available", classmethod(lambda cls: Availability(False, "test: changed")))
    assert load_listing().cached  # nothing the key watches changed: a third-party check would be stale
    refreshed = load_listing(refresh=True)
    assert not refreshed.cached and record(refreshed, "optimizer", "lion")["reason"] == "test: changed"
    assert record(load_listing(), "optimizer", "lion")["reason"] == "test: changed"
    monkeypatch.setenv("CRITERIA_LISTING_CACHE", "0")
    for path in fresh_cache.glob("*.json"):
        path.unlink()
    assert not load_listing().cached and not list(fresh_cache.glob("*.json"))


def test_plain_listing_commands_skip_typer_and_others_do_not():
    assert _plugins_list_args(["plugins", "list"]) == {"as_json": False, "kind": None, "refresh": False}
    assert _plugins_list_args(["plugins", "list", "--json", "-k", "loss", "--refresh"]) == {
        "as_json": True, "kind": "loss", "refresh": True}
    assert _plugins_list_args(["plugins", "list", "--kind=head"])["kind"] == "head"
    for argv in (["plugins", "list", "--help"], ["plugins", "list", "--kind"],
                 ["plugins", "list", "-k", "--json"],
                 ["plugins", "list", "--kind="], ["plugins", "show", "lion"], ["plugins", "list", "x"], []):
        assert _plugins_list_args(argv) is None, argv
