"""The plugin registry: how packages plug into giants.

Packages are pluggy plugins of the project ``giants``, found through the entry-point
group ``giants`` (``raft = "giants.raft.plugin"``). Hooks are synchronous, do no I/O,
and register into a ``Registry`` object -- the registrar pattern -- rather than return
values, so one call can register several things.

There is no global plugin manager: ``load_registry()`` builds a fresh manager and
registry, so two differently composed clusters can live in one test process. After
loading, ``check_pending()`` runs so that a misspelled hook implementation fails loudly.

Composition asks the registry by capability and name::

    reg = load_registry()
    raft = reg.consensus("raft")          # a ConsensusFactory
    fs = reg.get("filesystem", "gfs")     # whatever the gfs plugin provided
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from giants.core.errors import LocalProtocolError

__all__ = [
    "PROJECT",
    "hookspec",
    "hookimpl",
    "HookSpecs",
    "Registry",
    "System",
    "Role",
    "Instance",
    "UpOptions",
    "load_registry",
    "make_plugin_manager",
]

LOG = logging.getLogger("giants.plugins")
PROJECT = "giants"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# Capabilities packages provide and ask for by name. A capability's factory type is
# documented in giants.core.interfaces.
CAPABILITIES = (
    "consensus",        # ConsensusFactory: builds a sans-I/O consensus core
    "lock_service",     # LockService client factory
    "filesystem",       # FileSystem client factory
    "kv_store",         # KeyValueStore client factory
    "commit_protocol",  # CommitProtocol
    "lock_manager",     # LockManager factory
    "coordination",     # ZooKeeper-style coordination client factory
)


class HookSpecs:
    """The hooks a giants plugin may implement. All synchronous, all without I/O."""

    @hookspec
    def giants_register_services(self, registry: Registry) -> None:
        """Register this package's systems (``registry.add_system``) and the capabilities
        it provides (``registry.provide(capability, name, factory)``)."""

    @hookspec
    def giants_add_commands(self, subparsers: argparse._SubParsersAction, registry: Registry) -> None:  # type: ignore[type-arg]
        """Add client subcommands to the ``giants`` CLI (``giants kv ...``).

        Each added parser must ``set_defaults(func=callable)`` where the callable takes the
        parsed ``argparse.Namespace`` and returns an exit code (it may call ``trio.run``).
        """


RoleMain = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Role:
    """One server role of a system (``raft`` has ``node``; GFS has ``master``,
    ``shadow`` and ``chunkserver``). ``main`` is an async function that serves the role
    from its config dict until cancelled; the launcher runs it in its own OS process."""

    name: str
    main: RoleMain
    summary: str = ""


@dataclass(frozen=True)
class Instance:
    """One process of a planned cluster: which role, its unique name (``node-0``), the
    config dict handed to ``Role.main``, and the client-facing ``host:port`` it listens on
    (``None`` if it has none). Readiness means that port accepts connections."""

    role: str
    name: str
    config: dict[str, Any]
    endpoint: str | None


@dataclass(frozen=True)
class UpOptions:
    """What ``giants up SYSTEM`` was asked for. ``extra`` holds system-specific options
    (``--shards``) and spec-file keys."""

    nodes: int | None
    base_port: int
    data_dir: str
    host: str = "127.0.0.1"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class System:
    """A runnable system. ``plan`` turns ``UpOptions`` into the processes to start
    (in start order); ``demo``/``sim``/``bench`` are optional entry points taking an
    ``argparse.Namespace``-like object and returning an exit code."""

    name: str
    summary: str
    roles: dict[str, Role]
    plan: Callable[[UpOptions], list[Instance]]
    capabilities: tuple[str, ...] = ()
    demo: Callable[[Any], int] | None = None
    sim: Callable[[Any], int] | None = None
    default_nodes: int = 3


class Registry:
    """Everything the loaded plugins registered. One per plugin manager."""

    def __init__(self, plugin_manager: pluggy.PluginManager | None = None) -> None:
        self.plugin_manager = plugin_manager
        self._systems: dict[str, System] = {}
        self._provided: dict[tuple[str, str], Any] = {}

    # -- systems ----------------------------------------------------------------------

    def add_system(self, system: System) -> None:
        """Raises ``LocalProtocolError`` if another system already has this name."""
        if system.name in self._systems and self._systems[system.name] is not system:
            raise LocalProtocolError(f"system {system.name!r} registered twice")
        self._systems[system.name] = system

    def system(self, name: str) -> System:
        """Raises ``LocalProtocolError`` naming the installed systems if ``name`` is unknown."""
        try:
            return self._systems[name]
        except KeyError:
            known = ", ".join(sorted(self._systems)) or "none"
            raise LocalProtocolError(f"no system {name!r} installed (installed: {known})") from None

    def systems(self) -> list[System]:
        return [self._systems[n] for n in sorted(self._systems)]

    # -- capabilities -----------------------------------------------------------------

    def provide(self, capability: str, name: str, factory: Any) -> None:
        """Raises ``LocalProtocolError`` for an unknown capability or a duplicate name."""
        if capability not in CAPABILITIES:
            raise LocalProtocolError(f"unknown capability {capability!r}; known: {CAPABILITIES}")
        key = (capability, name)
        if key in self._provided and self._provided[key] is not factory:
            raise LocalProtocolError(f"{capability} {name!r} provided twice")
        self._provided[key] = factory

    def get(self, capability: str, name: str) -> Any:
        """Raises ``LocalProtocolError`` naming what is available if nothing matches."""
        try:
            return self._provided[(capability, name)]
        except KeyError:
            have = ", ".join(self.names(capability)) or "none"
            raise LocalProtocolError(
                f"no {capability} named {name!r} (available: {have})"
            ) from None

    def names(self, capability: str) -> list[str]:
        return sorted(n for (c, n) in self._provided if c == capability)

    def consensus(self, name: str) -> Any:
        return self.get("consensus", name)

    def filesystem(self, name: str) -> Any:
        return self.get("filesystem", name)

    def lock_service(self, name: str) -> Any:
        return self.get("lock_service", name)


def make_plugin_manager(extra_plugins: Iterable[object] = (), *, entry_points_too: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with giants' hookspecs, the installed plugins (unless
    ``entry_points_too`` is False) and ``extra_plugins``; ``check_pending`` has run."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    if entry_points_too:
        for ep in sorted(entry_points(group=PROJECT), key=lambda e: e.name):
            if pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # one broken package must not take the CLI down
                LOG.error("giants plugin %r (%s) failed to load and is skipped: %s: %s",
                          ep.name, ep.value, type(exc).__name__, exc)
                continue
            pm.register(plugin, name=ep.name)
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def load_registry(extra_plugins: Iterable[object] = (), *, entry_points_too: bool = True) -> Registry:
    """Build a plugin manager and a registry filled by ``giants_register_services``."""
    pm = make_plugin_manager(extra_plugins, entry_points_too=entry_points_too)
    registry = Registry(pm)
    pm.hook.giants_register_services(registry=registry)
    return registry
