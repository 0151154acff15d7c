"""The local launcher: every instance of a planned cluster as its own OS process.

DESIGN.md "cluster": ``giants up`` runs a system (or a spec of several) as local
processes on 127.0.0.1. For each service: ``system.plan(opts)`` gives the instances;
each gets ``<data_dir>/<instance.name>/config.json`` (its config, plus ``data_dir``
and ``name`` if the plan did not set them) and runs as
``python -m giants.core.cli run ROLE --system S --config FILE --exit-with-parent``
with stdout and stderr appended to ``log.txt`` beside it. An instance is ready when
its endpoint accepts a TCP connection; a service's instances all start, then are all
awaited, before the next service (its dependents) starts.

``LocalCluster`` is the synchronous Python API (a context manager) that ``giants up``,
demos and real multi-process tests use: ``start``, ``stop``, ``kill(name)``,
``restart(name)``, ``endpoints``, ``pids``. It never exits because a child died: it
reports the death (``reap``) and leaves restarting to its caller.

Ports: with ``base_port=0`` the launcher picks them up front: a random base below the
kernel's ephemeral range (so no outgoing connection can be holding a port when a killed
node restarts on it) whose every planned port is free right now.

Plugins for tests: ``plugins=["module:attr"]`` (and ``pythonpath=[dir]``) registers
extra plugin objects both here and in every child (``giants --plugin module:attr
run ...``), so a test can launch a system that is not installed as an entry point;
``entry_points=False`` (``--no-entry-points``) loads nothing else, so such a test does
not depend on which other packages happen to be installed.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from giants.core.cluster import ClusterSpec, ServiceSpec
from giants.core.errors import GiantsError, LocalProtocolError
from giants.core.plugins import Instance, Registry, System, UpOptions, load_registry

__all__ = ["LaunchError", "LocalCluster", "load_plugin_objects", "free_port"]

READY_POLL_S = 0.05
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 20
PORT_PICK_TRIES = 50


class LaunchError(GiantsError):
    """An instance died or never became ready; the message names it and its log tail."""


def load_plugin_objects(specs: Sequence[str], pythonpath: Sequence[str] = ()) -> list[object]:
    """Import ``module:attr`` (or ``module``) plugin specs, with ``pythonpath`` on
    ``sys.path``. Raises ``LocalProtocolError`` naming a spec that does not load."""
    for p in pythonpath:
        if p not in sys.path:
            sys.path.insert(0, p)
    out = []
    for spec in specs:
        mod_name, _, attr = spec.partition(":")
        try:
            obj: object = importlib.import_module(mod_name)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise LocalProtocolError(f"cannot load plugin {spec!r}: {exc}") from None
        out.append(obj)
    return out


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free on ``host`` now (from the ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _ports_in(value: Any, key: str = "") -> list[int]:
    """Every port a plan's config mentions: ``host:port`` strings and ``*port`` ints."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _ports_in(v, str(k))]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _ports_in(v, key)]
    if isinstance(value, str) and value.count(":") == 1:
        port = value.rsplit(":", 1)[1]
        return [int(port)] if port.isdigit() and 0 < int(port) < 65536 else []
    if isinstance(value, int) and not isinstance(value, bool) and key.endswith("port"):
        return [value] if 0 < value < 65536 else []
    return []


@dataclass
class _Child:
    service: str
    system: str
    instance: Instance
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    reported: bool = False

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    @property
    def log_path(self) -> Path:
        return self.dir / "log.txt"


@dataclass
class _Service:
    name: str
    system: System
    opts: UpOptions
    instances: list[Instance]


class LocalCluster:
    """One or more systems as local processes. Synchronous; use as a context manager.

    ``LocalCluster("raft", UpOptions(3, 0, str(tmp_path)))`` for one system, or
    ``LocalCluster.from_spec(spec)`` for a cluster spec. Instance names are the plan's
    (``node-0``) for one system and ``<service>/<name>`` for a spec of several.
    """

    def __init__(self, system: str, opts: UpOptions, *, registry: Registry | None = None,
                 plugins: Sequence[str] = (), pythonpath: Sequence[str] = (),
                 ready_timeout_s: float = 30.0, record: str | os.PathLike[str] | None = None,
                 env: dict[str, str] | None = None, spec: ClusterSpec | None = None,
                 log: IO[str] | None = None, entry_points: bool = True) -> None:
        self.plugins = list(plugins)
        self.pythonpath = [str(Path(p).absolute()) for p in pythonpath]
        self.entry_points = entry_points
        if registry is None:
            registry = load_registry(load_plugin_objects(self.plugins, self.pythonpath),
                                     entry_points_too=entry_points)
        self.registry = registry
        self.ready_timeout_s = ready_timeout_s
        self.record_path = Path(record) if record is not None else None
        self.extra_env = dict(env or {})
        self._log = log if log is not None else sys.stderr
        if spec is None:
            spec = ClusterSpec(name=system, services=(ServiceSpec(system, system, opts.nodes,
                               opts.base_port, opts.host, {}, dict(opts.extra)),),
                               data_dir=opts.data_dir, base_port=opts.base_port, host=opts.host)
            self._single_dir: Path | None = Path(opts.data_dir).absolute()
        else:
            self._single_dir = None
        self.spec = spec
        for svc in spec.services:
            registry.system(svc.system)  # fail now, naming what is installed
        self.services: list[_Service] = []
        self.children: dict[str, _Child] = {}

    @classmethod
    def from_spec(cls, spec: ClusterSpec, **kwargs: Any) -> LocalCluster:
        opts = UpOptions(None, spec.base_port, spec.data_dir, spec.host)
        return cls(spec.name, opts, spec=spec, **kwargs)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Plan and start every service in order; returns ``info`` (the JSON record).
        Raises ``LaunchError`` (after stopping what it started) if an instance dies or
        is not ready within ``ready_timeout_s``."""
        try:
            for svc_spec in self.spec.services:
                svc = self._plan_service(svc_spec)
                self.services.append(svc)
                names = [self._add_child(svc, inst) for inst in svc.instances]
                for name in names:
                    self._spawn(self.children[name])
                deadline = time.monotonic() + self.ready_timeout_s
                for name in names:
                    self._wait_ready(self.children[name], deadline)
        except BaseException:
            self.stop()
            raise
        self._write_record()
        return self.info

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every live child (dependents first), wait up to ``grace_s``, then
        SIGKILL stragglers. Idempotent."""
        live = [c for c in reversed(list(self.children.values())) if self._alive(c)]
        for c in live:
            assert c.proc is not None
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for c in live:
            assert c.proc is not None
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"{self._name_of(c)} ignored SIGTERM for {grace_s}s: SIGKILL")
                c.proc.kill()
                c.proc.wait()
        for c in self.children.values():
            c.reported = True
            self._close_log(c)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to instance ``name`` and wait for it to exit; returns its exit
        status. Raises ``LocalProtocolError`` for an unknown or already dead instance."""
        c = self._child(name)
        if not self._alive(c):
            raise LocalProtocolError(f"{name} is not running")
        assert c.proc is not None
        c.proc.send_signal(sig)
        code = c.proc.wait(STOP_GRACE_S)
        c.reported = True
        self._close_log(c)
        return code

    def restart(self, name: str) -> int:
        """Start the dead instance ``name`` again with the same config and wait until it
        is ready; returns its new pid. Raises ``LocalProtocolError`` if it is running,
        ``LaunchError`` if it does not come up."""
        c = self._child(name)
        if self._alive(c):
            raise LocalProtocolError(f"{name} is still running; kill it first")
        self._spawn(c)
        self._wait_ready(c, time.monotonic() + self.ready_timeout_s)
        self._write_record()
        assert c.proc is not None
        return c.proc.pid

    def reap(self) -> list[tuple[str, int]]:
        """Children that exited since the last call and were not killed through this
        object: ``(name, exit status)``; each is reported once."""
        out = []
        for name, c in self.children.items():
            if c.proc is not None and not c.reported and c.proc.poll() is not None:
                c.reported = True
                out.append((name, c.proc.returncode))
        return out

    def alive(self, name: str) -> bool:
        return self._alive(self._child(name))

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        path = self._child(name).log_path
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- views --------------------------------------------------------------------------

    @property
    def endpoints(self) -> dict[str, list[str]]:
        """``{role: [host:port, ...]}`` (``"<service>/<role>"`` keys for several)."""
        out: dict[str, list[str]] = {}
        for svc in self.services:
            for role, eps in self.service_endpoints(svc.name).items():
                out[role if len(self.spec.services) == 1 else f"{svc.name}/{role}"] = eps
        return out

    def service_endpoints(self, service: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for svc in self.services:
            if svc.name == service:
                for inst in svc.instances:
                    eps = out.setdefault(inst.role, [])
                    if inst.endpoint is not None:
                        eps.append(inst.endpoint)
        return out

    @property
    def pids(self) -> dict[str, int]:
        return {n: c.proc.pid for n, c in self.children.items() if c.proc is not None}

    @property
    def info(self) -> dict[str, Any]:
        """What ``giants up`` prints and records in ``.giants/last-up.json``."""
        single = len(self.spec.services) == 1
        return {
            "system": self.spec.services[0].system if single else self.spec.name,
            "endpoints": self.endpoints,
            "pids": self.pids,
            "data_dir": str(self._single_dir or Path(self.spec.data_dir).absolute()),
            "services": {s.name: {"system": s.system.name, "data_dir": s.opts.data_dir,
                                  "endpoints": self.service_endpoints(s.name)}
                         for s in self.services},
        }

    # -- internals ----------------------------------------------------------------------

    def _plan_service(self, svc_spec: ServiceSpec) -> _Service:
        system = self.registry.system(svc_spec.system)
        extra = dict(svc_spec.extra)
        for key, target in svc_spec.bindings.items():
            dep = next((s for s in self.services if s.name == target), None)
            if dep is None:
                extra[key] = target
            else:
                extra.update({key: dep.system.name, f"{key}_service": dep.name,
                              f"{key}_endpoints": self.service_endpoints(dep.name)})
        data_dir = self._single_dir or Path(self.spec.data_dir).absolute() / svc_spec.name
        host = svc_spec.host or self.spec.host
        opts = UpOptions(svc_spec.nodes, self.spec.service_base_port(svc_spec), str(data_dir),
                         host, extra)
        if opts.base_port == 0:
            opts, instances = self._plan_on_free_ports(system, opts)
        else:
            instances = system.plan(opts)
        return _Service(svc_spec.name, system, opts, instances)

    def _plan_on_free_ports(self, system: System, opts: UpOptions
                            ) -> tuple[UpOptions, list[Instance]]:
        high = _ephemeral_low() - 1000
        rng = random.Random()
        others = set(_ports_in(opts.extra))  # bound services' ports: in use, not ours
        for _ in range(PORT_PICK_TRIES):
            trial = replace(opts, base_port=rng.randrange(10000, high, 10))
            instances = system.plan(trial)
            ports = {p for inst in instances for p in _ports_in(
                [inst.endpoint, inst.config])} - others
            if all(_port_free(opts.host, p) for p in ports):
                return trial, instances
        raise LaunchError(f"found no free port range for {system.name} in {PORT_PICK_TRIES} tries")

    def _add_child(self, svc: _Service, inst: Instance) -> str:
        name = inst.name if len(self.spec.services) == 1 else f"{svc.name}/{inst.name}"
        if name in self.children:
            raise LocalProtocolError(f"{svc.system.name}'s plan names {inst.name!r} twice")
        cdir = Path(svc.opts.data_dir) / inst.name
        cdir.mkdir(parents=True, exist_ok=True)
        config = dict(inst.config)
        config.setdefault("data_dir", str(cdir))
        config.setdefault("name", inst.name)
        child = _Child(svc.name, svc.system.name, inst, cdir)
        child.config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        self.children[name] = child
        return name

    def _spawn(self, c: _Child) -> None:
        cmd = [sys.executable, "-m", "giants.core.cli"]
        for p in self.plugins:
            cmd += ["--plugin", p]
        if not self.entry_points:
            cmd.append("--no-entry-points")
        cmd += ["run", c.instance.role, "--system", c.system, "--config", str(c.config_path),
                "--exit-with-parent"]
        env = dict(os.environ)
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                [*self.pythonpath, *filter(None, [env.get("PYTHONPATH")])])
        self._close_log(c)
        c.log = open(c.log_path, "ab")  # lives as long as the child
        c.log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(cmd)}\n".encode())
        c.log.flush()
        c.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=c.log,
                                  stderr=subprocess.STDOUT, env=env, start_new_session=True)
        c.reported = False

    def _wait_ready(self, c: _Child, deadline: float) -> None:
        if c.instance.endpoint is None:
            return
        host, _, port = c.instance.endpoint.rpartition(":")
        assert c.proc is not None
        while True:
            if c.proc.poll() is not None:
                c.reported = True
                raise LaunchError(f"{self._name_of(c)} exited with status {c.proc.returncode} "
                                  f"before it was ready; {c.log_path} ends:\n{self._tail(c)}")
            try:
                with socket.create_connection((host, int(port)), timeout=READY_POLL_S * 4):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise LaunchError(f"{self._name_of(c)} did not accept connections on "
                                  f"{c.instance.endpoint} within {self.ready_timeout_s}s; "
                                  f"{c.log_path} ends:\n{self._tail(c)}")
            time.sleep(READY_POLL_S)

    def _write_record(self) -> None:
        if self.record_path is None:
            return
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.info, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.record_path)

    def _child(self, name: str) -> _Child:
        try:
            return self.children[name]
        except KeyError:
            raise LocalProtocolError(
                f"no instance {name!r} (instances: {', '.join(self.children)})") from None

    def _name_of(self, c: _Child) -> str:
        return next(n for n, x in self.children.items() if x is c)

    def _tail(self, c: _Child) -> str:
        return self.log_tail(self._name_of(c))

    @staticmethod
    def _alive(c: _Child) -> bool:
        return c.proc is not None and c.proc.poll() is None

    @staticmethod
    def _close_log(c: _Child) -> None:
        if c.log is not None:
            c.log.close()
            c.log = None

    def _say(self, text: str) -> None:
        print(f"giants: {text}", file=self._log, flush=True)
