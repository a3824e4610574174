"""The plugin registry: loads plugin distributions through entry points and keeps what they register.

Built-in plugins load exactly like third-party ones: through the ``criteria`` entry-point group.
A broken distribution (its module does not import, a hook raises, a plugin class breaks the
contract, a name is already taken) is recorded with its reason and never stops the others.

``CRITERIA_LOAD_PLUGINS`` restricts which third-party distributions load: a comma-separated list
of distribution names; empty loads none. The built-in plugins (distribution ``criteria``) always load.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from types import ModuleType
from typing import Any, Iterable, Iterator

import pluggy

from criteria.errors import UnknownPluginError, did_you_mean
from criteria.plugin import hookspecs
from criteria.plugin.base import Availability, Plugin
from criteria.plugin.fields import contract_errors
from criteria.plugin.kinds import KINDS, Kind, kind_named

ENTRY_POINT_GROUP = "criteria"
LOAD_PLUGINS_ENV = "CRITERIA_LOAD_PLUGINS"
HOST_DISTRIBUTION = "criteria"
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def normalize_distribution(name: str) -> str:
    """PEP 503 normalisation, so ``Criteria_Foo`` and ``criteria-foo`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin class and the distribution that shipped it."""

    cls: type[Plugin]
    kind: Kind
    distribution: str
    version: str

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def source(self) -> str:
        return f"{self.distribution} {self.version}"

    def availability(self) -> Availability:
        try:
            return self.cls.available()
        except Exception as exc:  # a plugin's own check must not break listing
            return Availability(False, f"its availability check raised {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class BrokenPlugin:
    """Something a distribution ships that could not be loaded, and why."""

    distribution: str
    version: str
    what: str
    reason: str
    kind: str | None = None
    name: str | None = None

    @property
    def source(self) -> str:
        return f"{self.distribution} {self.version}"


class Registry:
    """Every plugin known to this process, by kind and name."""

    def __init__(self) -> None:
        self._plugins: dict[str, dict[str, PluginInfo]] = {kind.name: {} for kind in KINDS}
        self.broken: list[BrokenPlugin] = []
        # The entry points this registry tried to load (what a cached listing must watch).
        self.entry_points: list[metadata.EntryPoint] = []
        self._manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self._manager.add_hookspecs(hookspecs)

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def from_entry_points(cls, allowed: Iterable[str] | None = None) -> Registry:
        """Load every distribution in the ``criteria`` entry-point group.

        ``allowed`` (default: from ``CRITERIA_LOAD_PLUGINS``) names the third-party
        distributions to load; ``None`` loads all.
        """
        registry = cls()
        if allowed is None:
            allowed = _allowed_from_env()
        wanted = None if allowed is None else {normalize_distribution(d) for d in allowed}

        found = [(*_name_and_version(ep), ep) for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)]
        found.sort(key=lambda item: (normalize_distribution(item[0]) != HOST_DISTRIBUTION, item[0].lower(), item[2].name))
        for dist_name, version, ep in found:
            dist = normalize_distribution(dist_name)
            if wanted is not None and dist != HOST_DISTRIBUTION and dist not in wanted:
                continue
            registry.entry_points.append(ep)
            try:
                module = ep.load()
            except Exception as exc:
                registry.broken.append(
                    BrokenPlugin(dist_name, version, f"entry point {ep.name!r} ({ep.value})",
                                 f"import failed: {type(exc).__name__}: {exc}")
                )
                continue
            registry.add_module(module, distribution=dist_name, version=version, label=ep.name)
        return registry

    def add_module(self, module: ModuleType | object, *, distribution: str, version: str, label: str = "") -> None:
        """Register the hooks a module (or any object with hook functions) implements."""
        what = f"entry point {label!r}" if label else f"module {getattr(module, '__name__', module)!r}"
        try:
            self._manager.register(module, name=f"{distribution}:{label or id(module)}")
        except Exception as exc:  # pluggy.PluginValidationError and friends
            self.broken.append(BrokenPlugin(distribution, version, what, f"invalid hooks: {exc}"))
            return
        unknown = [
            name for name in dir(module)
            if self._manager.parse_hookimpl_opts(module, name) is not None
            and not hasattr(hookspecs, name)
        ]
        for name in unknown:
            hooks = [kind.hook for kind in KINDS]
            self.broken.append(BrokenPlugin(
                distribution, version, what,
                f"implements unknown hook {name!r}{did_you_mean(name, hooks)}; hooks: {', '.join(hooks)}",
            ))
        for kind in KINDS:
            for impl in getattr(self._manager.hook, kind.hook).get_hookimpls():
                if impl.plugin is module:
                    self._call_hook(impl.function, kind, distribution, version, what)

    def _call_hook(self, hook: Any, kind: Kind, distribution: str, version: str, what: str) -> None:
        pending: list[type[Plugin]] = []

        def register(*classes: type[Plugin]) -> None:
            pending.extend(classes)

        try:
            hook(register=register)
        except Exception as exc:
            self.broken.append(BrokenPlugin(
                distribution, version, f"{what}, hook {kind.hook}",
                f"the hook raised {type(exc).__name__}: {exc}",
            ))
            return
        for plugin_cls in pending:
            problems = self._contract_problems(plugin_cls, kind)
            label = f"{kind.name} {getattr(plugin_cls, 'name', None) or getattr(plugin_cls, '__name__', plugin_cls)!r}"
            name = getattr(plugin_cls, "name", None)
            if problems:
                self.broken.append(BrokenPlugin(distribution, version, label, "; ".join(problems), kind.name, name))
                continue
            existing = self._plugins[kind.name].get(plugin_cls.name)
            if existing is not None:
                self.broken.append(BrokenPlugin(
                    distribution, version, label,
                    f"duplicate {kind.name} name {plugin_cls.name!r}: {existing.source} already provides it, "
                    f"so the one from {distribution} {version} was not loaded. Uninstall one of them or "
                    f"leave {distribution} out of {LOAD_PLUGINS_ENV}.",
                    kind.name, name,
                ))
                continue
            self._plugins[kind.name][plugin_cls.name] = PluginInfo(plugin_cls, kind, distribution, version)

    @staticmethod
    def _contract_problems(plugin_cls: Any, kind: Kind) -> list[str]:
        if not (isinstance(plugin_cls, type) and issubclass(plugin_cls, kind.base)):
            return [f"{plugin_cls!r} is not a subclass of criteria.{kind.base.__name__}"]
        problems = []
        name = plugin_cls.__dict__.get("name", "")
        if not (isinstance(name, str) and _NAME_PATTERN.match(name)):
            problems.append(f"class {plugin_cls.__name__} needs a `name` of lowercase letters, digits and _")
        summary = plugin_cls.summary
        if not (isinstance(summary, str) and summary.strip() and "\n" not in summary.strip()):
            problems.append(f"class {plugin_cls.__name__} needs a one-line `summary`")
        problems.extend(contract_errors(plugin_cls.Config))
        if not problems:
            problems.extend(plugin_cls.contract_problems())
        return problems

    # --- lookup ----------------------------------------------------------------------------

    def plugins(self, kind: str | Kind) -> dict[str, PluginInfo]:
        """The plugins of one kind, by name (sorted)."""
        name = kind.name if isinstance(kind, Kind) else kind_named(kind).name
        return dict(sorted(self._plugins[name].items()))

    def get(self, kind: str | Kind, name: str) -> PluginInfo:
        """A plugin by kind and name; unknown names raise with a "did you mean"."""
        plugins = self.plugins(kind)
        if name not in plugins:
            raise UnknownPluginError(kind.name if isinstance(kind, Kind) else kind, name, plugins)
        return plugins[name]

    def broken_plugin(self, kind: str, name: str) -> BrokenPlugin | None:
        """Why a plugin of this kind and name failed to load, if it did."""
        return next((b for b in self.broken if (b.kind, b.name) == (kind, name)), None)

    def find(self, name: str) -> list[PluginInfo]:
        """Every plugin called ``name``, of any kind."""
        return [info for info in self if info.name == name]

    def __iter__(self) -> Iterator[PluginInfo]:
        for kind in KINDS:
            yield from self.plugins(kind).values()

    def __len__(self) -> int:
        return sum(len(p) for p in self._plugins.values())


@lru_cache(maxsize=None)
def _dist_identity(dist: metadata.Distribution) -> tuple[str, str]:
    # Each of ``name`` and ``version`` parses the whole METADATA file (long descriptions
    # included); one parse per distribution keeps listing fast however many entry points it has.
    fields = dist.metadata
    return fields["Name"] or "unknown", fields["Version"] or "?"


def _name_and_version(ep: metadata.EntryPoint) -> tuple[str, str]:
    return _dist_identity(ep.dist) if ep.dist is not None else ("unknown", "?")


def _allowed_from_env() -> list[str] | None:
    raw = os.environ.get(LOAD_PLUGINS_ENV)
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    return Registry.from_entry_points()
