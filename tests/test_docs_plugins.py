"""Every Python block of docs/plugins.md runs as written.

A block whose first line is ``# file: PATH`` is a file of the guide's example package: it is
written to PATH under a temporary folder (put on ``sys.path``, as an installed package would be).
Every other block is run on its own, after the files exist. A ``test_*`` function a file defines
is called, as pytest would.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_FILE = re.compile(r"^# file: (\S+)\n")


def python_blocks() -> list[str]:
    return _BLOCK.findall(GUIDE.read_text(encoding="utf-8"))


def test_the_guide_has_the_blocks_this_test_relies_on():
    files = [_FILE.match(block).group(1) for block in python_blocks() if _FILE.match(block)]
    assert files == ["criteria_my_sgd/__init__.py", "tests/test_my_sgd.py"]
    assert len(python_blocks()) >= 5


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_every_python_block_of_the_plugin_guide_runs(tmp_path, monkeypatch):
    snippets = []
    for block in python_blocks():
        named = _FILE.match(block)
        if named is None:
            snippets.append(block)
            continue
        path = tmp_path / named.group(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for number, snippet in enumerate(snippets):
            exec(compile(snippet, f"{GUIDE.name} snippet {number}", "exec"), {"__name__": f"guide_snippet_{number}"})
        ran = []
        for test_file in sorted(tmp_path.glob("tests/test_*.py")):
            spec = importlib.util.spec_from_file_location(test_file.stem, test_file)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for name in dir(module):
                if name.startswith("test_"):
                    getattr(module, name)()
                    ran.append(name)
        assert ran == ["test_it_honours_the_plugin_contract", "test_it_trains"]
    finally:
        for name in [m for m in sys.modules if m.startswith("criteria_my_sgd")]:
            del sys.modules[name]


def test_the_guide_plugin_registers_like_a_distribution(tmp_path, monkeypatch):
    """The guide's module, loaded the way an entry point loads it: registered, nothing broken."""
    from criteria.plugin.registry import Registry

    block = next(b for b in python_blocks() if b.startswith("# file: criteria_my_sgd/__init__.py"))
    (tmp_path / "guide_plugin.py").write_text(block, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import guide_plugin

    registry = Registry()
    registry.add_module(guide_plugin, distribution="criteria-my-sgd", version="0.1.0")
    assert not registry.broken and "my_sgd" in registry.plugins("optimizer")
    del sys.modules["guide_plugin"]
