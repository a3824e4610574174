"""The plugin registry: loads plugin distributions through entry points and keeps what they register.

Built-in plugins load exactly like third-party ones: through the ``criteria`` entry-point group.
A broken distribution (its module does not import, a hook raises, a plugin class breaks the
contract, a name is already taken) is recorded with its reason and never stops the others.

``CRITERIA_LOAD_PLUGINS`` restricts which third-party distributions load: a comma-separated list
of distribution names; empty loads none. The built-in plugins (distribution ``criteria``) always load.
``CRITERIA_BLOCK_PLUGINS`` switches off single plugins: comma-separated ``kind:name`` (from every
distribution) or ``kind:name@distribution`` (from that one only), e.g. ``optimizer:adamw@criteria-foo``.

Each entry-point module declares the plugin API versions it supports (``CRITERIA_PLUGIN_API``, see
:mod:`criteria.plugin.hookspecs`); one that does not support :data:`~criteria.plugin.hookspecs.PLUGIN_API`
is listed as broken.
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

from criteria.errors import CriteriaError, UnknownPluginError, did_you_mean
from criteria.plugin import hookspecs
from criteria.plugin.base import Availability, Plugin
from criteria.plugin.compatibility import declaration_problems
from criteria.plugin.fields import contract_errors
from criteria.plugin.kinds import KINDS, Kind, kind_named

ENTRY_POINT_GROUP = "criteria"
LOAD_PLUGINS_ENV = "CRITERIA_LOAD_PLUGINS"
BLOCK_PLUGINS_ENV = "CRITERIA_BLOCK_PLUGINS"
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

    def __init__(self, blocked: Iterable[str] = ()) -> None:
        self._plugins: dict[str, dict[str, PluginInfo]] = {kind.name: {} for kind in KINDS}
        self.broken: list[BrokenPlugin] = []
        # ``kind:name`` or ``kind:name@distribution`` entries switched off (CRITERIA_BLOCK_PLUGINS),
        # and the plugins they kept out, so that a spec naming one can say why it is missing.
        self._block_rules = [parse_block_rule(rule) for rule in blocked]
        self.blocked: list[PluginInfo] = []
        # The entry points this registry tried to load (what a cached listing must watch).
        self.entry_points: list[metadata.EntryPoint] = []
        self._manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self._manager.add_hookspecs(hookspecs)

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def from_entry_points(cls, allowed: Iterable[str] | None = None, blocked: Iterable[str] | None = None) -> Registry:
        """Load every distribution in the ``criteria`` entry-point group.

        ``allowed`` (default: from ``CRITERIA_LOAD_PLUGINS``) names the third-party
        distributions to load; ``None`` loads all. ``blocked`` (default: from
        ``CRITERIA_BLOCK_PLUGINS``) lists ``kind:name[@distribution]`` plugins to leave out.
        """
        registry = cls((_list_from_env(BLOCK_PLUGINS_ENV) or ()) if blocked is None else blocked)
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
        api_problem = _api_problem(module)
        if api_problem:
            self.broken.append(BrokenPlugin(distribution, version, what, api_problem))
            return
        try:
            self._manager.register(module, name=f"{distribution}:{label or id(module)}")
        except Exception as exc:  # pluggy.PluginValidationError and friends
            self.broken.append(BrokenPlugin(distribution, version, what, f"invalid hooks: {exc}"))
            return
        hooks = [kind.hook for kind in KINDS]
        for attribute in dir(module):
            opts = self._manager.parse_hookimpl_opts(module, attribute)
            # pluggy matches an implementation to its hook by ``specname`` when one is given
            hook = (opts or {}).get("specname") or attribute
            if opts is not None and not hasattr(hookspecs, hook):
                self.broken.append(BrokenPlugin(
                    distribution, version, what,
                    f"implements unknown hook {hook!r}{did_you_mean(hook, hooks)}; hooks: {', '.join(hooks)}",
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
            info = PluginInfo(plugin_cls, kind, distribution, version)
            if any(rule.matches(info) for rule in self._block_rules):
                self.blocked.append(info)
                continue
            existing = self._plugins[kind.name].get(plugin_cls.name)
            if existing is not None:
                rule = f"{kind.name}:{plugin_cls.name}"
                self.broken.append(BrokenPlugin(
                    distribution, version, label,
                    f"duplicate {kind.name} name {plugin_cls.name!r}: {existing.source} already provides it, "
                    f"so the one from {distribution} {version} was not loaded. To switch this one off, set "
                    f"{BLOCK_PLUGINS_ENV}={rule}@{distribution}; to use it instead, "
                    f"{BLOCK_PLUGINS_ENV}={rule}@{existing.distribution}.",
                    kind.name, name,
                ))
                continue
            self._plugins[kind.name][plugin_cls.name] = info

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
        problems.extend(declaration_problems(plugin_cls))
        if not problems:
            problems.extend(plugin_cls.contract_problems())
        return problems

    @classmethod
    def contract_problems(cls, plugin_cls: Any, kind: Kind | str | None = None) -> list[str]:
        """Why ``plugin_cls`` would not register as a plugin of ``kind`` (default: its own
        ``kind``); empty when it would. What :mod:`criteria.testing` checks first."""
        if kind is None:
            kind = getattr(plugin_cls, "kind", "")
        try:
            resolved = kind if isinstance(kind, Kind) else kind_named(kind)
        except KeyError:
            kinds = ", ".join(k.name for k in KINDS)
            return [f"{plugin_cls!r} is of no known kind ({kind!r}); subclass a kind base class ({kinds})"]
        return cls._contract_problems(plugin_cls, resolved)

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

    def blocked_plugin(self, kind: str, name: str) -> PluginInfo | None:
        """The plugin of this kind and name that ``CRITERIA_BLOCK_PLUGINS`` left out, if one was."""
        return next((info for info in self.blocked if (info.kind.name, info.name) == (kind, name)), None)

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
    return _list_from_env(LOAD_PLUGINS_ENV)


def _list_from_env(variable: str) -> list[str] | None:
    raw = os.environ.get(variable)
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


@dataclass(frozen=True)
class BlockRule:
    """One ``CRITERIA_BLOCK_PLUGINS`` entry: ``kind:name``, optionally ``@distribution``."""

    kind: str
    name: str
    distribution: str | None = None

    def matches(self, info: PluginInfo) -> bool:
        return (info.kind.name, info.name) == (self.kind, self.name) and (
            self.distribution is None or normalize_distribution(info.distribution) == self.distribution)


def parse_block_rule(text: str) -> BlockRule:
    """``"optimizer:adamw@criteria-foo"`` -> ``BlockRule("optimizer", "adamw", "criteria-foo")``."""
    plugin, at, distribution = text.strip().partition("@")
    kind, _, name = plugin.partition(":")
    kinds = [k.name for k in KINDS]
    if not name or kind not in kinds or (at and not distribution):
        raise CriteriaError(
            f"{BLOCK_PLUGINS_ENV} entry {text!r} is not kind:name or kind:name@distribution"
            + (f"; unknown kind {kind!r}{did_you_mean(kind, kinds)}" if name and kind not in kinds else "")
            + f". Kinds: {', '.join(kinds)}; e.g. {BLOCK_PLUGINS_ENV}=optimizer:adamw@criteria-foo"
        )
    return BlockRule(kind, name, normalize_distribution(distribution) if distribution else None)


def _api_problem(module: object) -> str | None:
    """Why a plugin module cannot load under this plugin API (None: it can)."""
    declared = getattr(module, hookspecs.API_DECLARATION, 1)
    versions = (declared,) if isinstance(declared, int) else declared
    try:
        supported = sorted(versions)
        valid = bool(supported) and all(isinstance(v, int) and not isinstance(v, bool) for v in supported)
    except TypeError:
        valid = False
    if not valid:
        return (f"{hookspecs.API_DECLARATION} = {declared!r} is not a plugin API version; write an "
                f"integer or a collection of them, e.g. {hookspecs.API_DECLARATION} = {hookspecs.PLUGIN_API}")
    if hookspecs.PLUGIN_API in supported:
        return None
    from criteria import __version__

    return (f"written for plugin API {', '.join(map(str, supported))} ({hookspecs.API_DECLARATION}), but criteria "
            f"{__version__} provides plugin API {hookspecs.PLUGIN_API}: install a release of the plugin for "
            f"API {hookspecs.PLUGIN_API}, or a criteria release that provides API {supported[-1]}")


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    return Registry.from_entry_points()
