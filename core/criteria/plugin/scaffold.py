"""A new plugin package, ready to install: ``criteria plugins new KIND NAME``.

Writes ``criteria-<name>/`` with a ``pyproject.toml`` that registers the module through the
``criteria`` entry-point group, the module with a working example plugin of the kind (a ``Config``
with declared bounds and search ranges, a real ``build``), tests that use
:mod:`criteria.testing`, and a README. The templates live in ``criteria/resources/scaffold/``:
one module template per kind (``<kind>.py.tmpl``), and the files every package shares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from criteria.errors import CriteriaError, did_you_mean
from criteria.plugin.kinds import KINDS, Kind

__all__ = ["PluginPackage", "kinds_with_templates", "write_plugin_package"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TEMPLATES = resources.files("criteria") / "resources" / "scaffold"


@dataclass(frozen=True)
class PluginPackage:
    """The names a new plugin package is made of, from its kind and plugin name."""

    kind: Kind
    name: str

    @property
    def distribution(self) -> str:
        return "criteria-" + self.name.replace("_", "-")

    @property
    def package(self) -> str:
        return f"criteria_{self.name}"

    @property
    def class_name(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))

    def files(self) -> dict[str, str]:
        """Each file's path inside the package folder, and its text."""
        from criteria import __version__

        values = {
            "kind": self.kind.name, "name": self.name, "dist": self.distribution, "package": self.package,
            "Class": self.class_name, "criteria_version": __version__,
            "summary": f"The {self.kind.name} plugin {self.name!r} for criteria.",
        }

        def render(template: str) -> str:
            return Template((_TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)

        return {
            "pyproject.toml": render("pyproject.toml.tmpl"),
            "README.md": render("README.md.tmpl"),
            f"{self.package}/__init__.py": render(f"{self.kind.name}.py.tmpl"),
            f"tests/test_{self.name}.py": render("test.py.tmpl"),
        }


def kinds_with_templates() -> list[str]:
    return [kind.name for kind in KINDS if (_TEMPLATES / f"{kind.name}.py.tmpl").is_file()]


def write_plugin_package(kind: str, name: str, folder: Path | None = None) -> tuple[PluginPackage, Path]:
    """Write a new package for plugin ``name`` of ``kind`` into ``folder`` (default:
    ``./criteria-<name>``), which must not exist or be empty. Returns its names and folder."""
    kinds = [k.name for k in KINDS]
    if kind not in kinds:
        raise CriteriaError(f"unknown kind {kind!r}{did_you_mean(kind, kinds)}; kinds: {', '.join(kinds)}")
    if kind not in kinds_with_templates():
        raise CriteriaError(f"there is no {kind} template yet; kinds with one: {', '.join(kinds_with_templates())}")
    if not _NAME.match(name):
        raise CriteriaError(f"plugin name {name!r} must be lowercase letters, digits and _, starting with a "
                            f"letter (it is how specs name the plugin), e.g. {re.sub(r'[^a-z0-9_]', '_', name.lower())!r}")
    package = PluginPackage(next(k for k in KINDS if k.name == kind), name)
    folder = folder if folder is not None else Path(package.distribution)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise CriteriaError(f"{folder} already exists and is not empty; choose another --output folder")
    for relative, text in package.files().items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package, folder
