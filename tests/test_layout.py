"""The package's shape: one subpackage per concern, layered; plugins use the public API only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import criteria
import pytest

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "core" / "criteria"
BUILTINS = ROOT / "plugins" / "criteria_builtins"

# Lowest first: a module may import its own layer and those below it, never one above.
LAYERS = ["root", "plugin", "data", "engine", "spec", "study", "cli"]
ROOT_MODULES = {"errors", "cache", "files", "hardware"}
# Public modules outside the layers. criteria.testing checks and runs a plugin the way the engine
# and a study use it (parameter groups, tiny models, toy studies), so it may import every layer;
# nothing in the package imports it.
PUBLIC_MODULES = {"testing"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "criteria" or len(parts) < 2:
        return None
    return "root" if parts[1] in ROOT_MODULES else parts[1]


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import that runs (``if TYPE_CHECKING:`` blocks, which only
    annotate, are left out)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
    return found


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_tree_is_one_subpackage_per_concern_each_saying_what_it_owns():
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert subpackages == sorted(set(LAYERS) - {"root"})
    for name in subpackages:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and "Imports" in doc, f"criteria.{name} needs a docstring saying what it owns and may import"
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert loose == sorted(ROOT_MODULES | PUBLIC_MODULES)


@pytest.mark.parametrize("path", _modules(PACKAGE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above_its_own(path):
    own = _layer("criteria." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
    # criteria/__init__.py (the public facade, loading lazily from every layer) and the public
    # modules above every layer (criteria.testing)
    if own is None or own in PUBLIC_MODULES:
        return
    for line, module, _ in _runtime_imports(ast.parse(path.read_text())):
        other = _layer(module)
        assert other not in PUBLIC_MODULES, f"{path.relative_to(ROOT)}:{line} imports {module}, which sits above every layer"
        if other is not None:
            assert LAYERS.index(other) <= LAYERS.index(own), (
                f"{path.relative_to(ROOT)}:{line} imports {module} ({other}), a layer above {own}")


@pytest.mark.parametrize("path", _modules(BUILTINS), ids=lambda p: p.name)
def test_builtin_plugins_import_only_the_public_api(path):
    public = set(criteria.__all__)
    for line, module, names in _runtime_imports(ast.parse(path.read_text())):
        if module == "criteria":
            assert set(names) <= public, f"{path.name}:{line} imports non-public {sorted(set(names) - public)}"
        else:
            assert not module.startswith("criteria."), (
                f"{path.name}:{line} imports {module}; plugins import only `from criteria import ...`")


def test_all_the_lazy_exports_and_the_type_checking_imports_agree():
    exports = criteria._EXPORTS
    assert set(criteria.__all__) == set(exports) | {"__version__", "hookimpl"}
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    checked = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    checked.update({a.name: stmt.module for a in stmt.names})
    assert checked == exports
    for name, module in exports.items():
        value = getattr(criteria, name)
        assert value is getattr(importlib.import_module(module), name)
        home = getattr(value, "__module__", module)
        if home == "typing":  # an alias (SearchRange = Union[...]) has no module of its own
            continue
        assert home == module, f"criteria.{name} is defined in {home}, not {module}"
