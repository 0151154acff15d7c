"""Cluster specs (TOML) and finding a running cluster's endpoints.

DESIGN.md "cluster": a cluster spec names services, their systems and node counts,
ports, and the bindings between them. The same spec runs as local processes
(``giants up --spec FILE``), or in the simulator (``giants sim --spec FILE``).

Spec format (``tomllib``)::

    name = "bigtable-stack"        # optional; default: the file's stem
    data_dir = ".giants/data"      # optional; each service gets <data_dir>/<service>
    base_port = 7000               # optional; 0 (default) = the launcher picks free ports
    host = "127.0.0.1"             # optional

    [services.lock]                # one table per service
    system = "chubby"              # a system name from ``giants list``
    nodes = 5                      # optional; the system's default otherwise
    base_port = 7100               # optional; default cluster base_port + 100 * index
    options = { lease_s = 12 }     # optional; merged into UpOptions.extra

    [services.tablets]
    system = "bigtable"
    lock = "lock"                  # a binding naming another service of this spec
    filesystem = "fs"
    shards = 4                     # any other key goes into UpOptions.extra as is

    [services.fs]
    system = "colossus"
    consensus = "raft"             # a binding naming a plugin (not a service): passed as is

Bindings are the keys in ``BINDING_KEYS``. A binding whose value names another service
of the spec makes that service start first and puts into the dependent's
``UpOptions.extra``: ``<key>`` = that service's system name, ``<key>_service`` = its
service name and ``<key>_endpoints`` = ``{role: ["host:port", ...]}`` once it is up.
Any other binding value (``consensus = "raft"``) is passed through as ``extra[key]``.

A running cluster is recorded by ``giants up`` in ``.giants/last-up.json`` (the JSON
line it printed). ``resolve_endpoints`` is how every client command finds it.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from giants.core.errors import LocalProtocolError

__all__ = [
    "BINDING_KEYS",
    "ENDPOINTS_ENV",
    "LAST_UP",
    "ClusterSpec",
    "ServiceSpec",
    "load_spec",
    "parse_spec",
    "parse_endpoints",
    "resolve_endpoints",
]

BINDING_KEYS = ("consensus", "lock", "filesystem", "coordination", "kv_store",
                "commit_protocol", "lock_manager")
ENDPOINTS_ENV = "GIANTS_ENDPOINTS"
LAST_UP = Path(".giants") / "last-up.json"
DEFAULT_DATA_DIR = Path(".giants") / "data"
# Ports one service may use past its base (``base + i`` for its nodes, and a second
# range some systems use for peer traffic): services in a spec are spaced this far apart.
PORTS_PER_SERVICE = 100
_SERVICE_KEYS = {"system", "nodes", "base_port", "options", "host"}
_TOP_KEYS = {"name", "data_dir", "base_port", "host", "services"}


@dataclass(frozen=True)
class ServiceSpec:
    """One service of a cluster spec."""

    name: str
    system: str
    nodes: int | None = None
    base_port: int | None = None
    host: str | None = None
    bindings: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def depends_on(self, services: Sequence[str]) -> list[str]:
        """The services of the spec this one binds to."""
        return [v for v in self.bindings.values() if v in services]


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed cluster spec: services in dependency order (dependencies first)."""

    name: str
    services: tuple[ServiceSpec, ...]
    data_dir: str = str(DEFAULT_DATA_DIR)
    base_port: int = 0
    host: str = "127.0.0.1"

    def service(self, name: str) -> ServiceSpec:
        for s in self.services:
            if s.name == name:
                return s
        raise LocalProtocolError(f"no service {name!r} in spec {self.name!r}")

    def service_base_port(self, svc: ServiceSpec) -> int:
        """The service's own base port, else ``base_port + 100 * index`` (0 stays 0)."""
        if svc.base_port is not None:
            return svc.base_port
        if self.base_port == 0:
            return 0
        return self.base_port + PORTS_PER_SERVICE * self.services.index(svc)


def load_spec(path: str | os.PathLike[str]) -> ClusterSpec:
    """Read and check a spec file. Raises ``LocalProtocolError`` naming the problem."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise LocalProtocolError(f"cannot read cluster spec {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LocalProtocolError(f"{p}: not valid TOML: {exc}") from None
    raw.setdefault("name", p.stem)
    return parse_spec(raw)


def _int_field(table: Mapping[str, Any], key: str, where: str, lo: int) -> int | None:
    v = table.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise LocalProtocolError(f"{where}: {key} must be an integer >= {lo}, got {v!r}")
    return v


def _parse_service(name: str, table: Any) -> ServiceSpec:
    where = f"service {name!r}"
    if not isinstance(table, dict):
        raise LocalProtocolError(f"{where}: must be a table")
    system = table.get("system")
    if not isinstance(system, str) or not system:
        raise LocalProtocolError(f"{where}: 'system' (a system name) is required")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise LocalProtocolError(f"{where}: 'options' must be a table")
    bindings = {}
    for key in BINDING_KEYS:
        if key in table:
            if not isinstance(table[key], str):
                raise LocalProtocolError(f"{where}: binding {key} must be a string")
            bindings[key] = table[key]
    extra = {k: v for k, v in table.items() if k not in _SERVICE_KEYS and k not in bindings}
    extra.update(options)
    host = table.get("host")
    return ServiceSpec(name, system, _int_field(table, "nodes", where, 1),
                       _int_field(table, "base_port", where, 0),
                       host if isinstance(host, str) else None, bindings, extra)


def parse_spec(raw: Mapping[str, Any]) -> ClusterSpec:
    """Build a ``ClusterSpec`` from a parsed TOML document (see the module docstring)."""
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise LocalProtocolError(f"unknown top-level spec keys: {sorted(unknown)}")
    services_raw = raw.get("services")
    if not isinstance(services_raw, dict) or not services_raw:
        raise LocalProtocolError("a spec needs at least one [services.NAME] table")
    services = [_parse_service(n, t) for n, t in services_raw.items()]
    ordered = _dependency_order(services)
    base = _int_field(raw, "base_port", "spec", 0) or 0
    return ClusterSpec(
        name=str(raw.get("name", "cluster")),
        services=tuple(ordered),
        data_dir=str(raw.get("data_dir", DEFAULT_DATA_DIR)),
        base_port=base,
        host=str(raw.get("host", "127.0.0.1")),
    )


def _dependency_order(services: list[ServiceSpec]) -> list[ServiceSpec]:
    names = [s.name for s in services]
    by_name = {s.name: s for s in services}
    done: list[ServiceSpec] = []
    visiting: list[str] = []

    def visit(s: ServiceSpec) -> None:
        if s in done:
            return
        if s.name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(s.name):], s.name])
            raise LocalProtocolError(f"services bind to each other in a cycle: {cycle}")
        visiting.append(s.name)
        for dep in s.depends_on(names):
            visit(by_name[dep])
        visiting.pop()
        done.append(s)

    for s in services:
        visit(s)
    return done


# -- finding a running cluster --------------------------------------------------------------


def parse_endpoints(value: str | Sequence[str]) -> list[str]:
    """``"h:p,h:p"`` (or a list) as a checked list. Raises ``LocalProtocolError``."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise LocalProtocolError(f"bad endpoint {item!r}: expected host:port")
        out.append(item)
    if not out:
        raise LocalProtocolError(f"no endpoints in {value!r}")
    return out


def resolve_endpoints(args_value: str | Sequence[str] | None, system: str | None = None,
                      role: str | None = None, *, cwd: str | os.PathLike[str] | None = None,
                      environ: Mapping[str, str] | None = None) -> list[str]:
    """The endpoints a client command should talk to.

    From ``args_value`` (``--endpoints host:port,...``), else ``$GIANTS_ENDPOINTS``,
    else ``.giants/last-up.json`` in ``cwd`` (default: the current directory): the
    service running ``system`` (or named ``system``; the only one if ``system`` is
    None), and of it ``role``'s endpoints (the only role with endpoints if ``role`` is
    None). Raises ``LocalProtocolError`` saying what to do when none can be found.
    """
    if args_value:
        return parse_endpoints(args_value)
    env = os.environ if environ is None else environ
    if env.get(ENDPOINTS_ENV):
        return parse_endpoints(env[ENDPOINTS_ENV])
    path = Path(cwd or ".") / LAST_UP
    if not path.exists():
        raise LocalProtocolError(
            f"no endpoints: pass --endpoints host:port,..., set {ENDPOINTS_ENV}, "
            f"or start a cluster with 'giants up' in this directory (no {LAST_UP} here)")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LocalProtocolError(f"cannot read {path}: {exc}") from None
    roles = _pick_service(record, system, path)
    return parse_endpoints(_pick_role(roles, role, path))


def _pick_service(record: Any, system: str | None, path: Path) -> dict[str, list[str]]:
    services = record.get("services") if isinstance(record, dict) else None
    if not isinstance(services, dict) or not services:
        raise LocalProtocolError(f"{path} holds no services")
    if system is None:
        if len(services) == 1:
            return dict(next(iter(services.values())).get("endpoints", {}))
        raise LocalProtocolError(f"{path} has several services ({', '.join(services)}); "
                                 "name one or pass --endpoints")
    for name, svc in services.items():
        if system in (name, svc.get("system")):
            return dict(svc.get("endpoints", {}))
    have = ", ".join(f"{n} ({s.get('system')})" for n, s in services.items())
    raise LocalProtocolError(f"the last 'giants up' ({path}) runs no {system!r}: it has {have}")


def _pick_role(roles: dict[str, list[str]], role: str | None, path: Path) -> list[str]:
    if role is not None:
        if not roles.get(role):
            raise LocalProtocolError(f"{path}: no endpoints for role {role!r} "
                                     f"(roles: {', '.join(roles) or 'none'})")
        return roles[role]
    with_eps = [r for r, eps in roles.items() if eps]
    if len(with_eps) != 1:
        raise LocalProtocolError(f"{path}: say which role ({', '.join(with_eps) or 'none'})")
    return roles[with_eps[0]]
