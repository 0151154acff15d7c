"""The ``giants`` command.

DESIGN.md "cli": one command; packages add subcommands through the
``giants_add_commands`` hook. Subcommands of the core:

* ``giants list``                      installed systems, roles, capabilities (a table)
* ``giants up SYSTEM [--nodes N] [--base-port P] [--data-dir D] [--key value ...]``
  or ``giants up --spec FILE.toml``     a local cluster, one process per instance
  (``launcher``); prints one JSON line (``system``, ``endpoints``, ``pids``,
  ``data_dir``, ``services``), records it in ``.giants/last-up.json``, stays up until
  SIGINT/SIGTERM; a dead instance is reported on stderr and left down until the
  launcher gets SIGHUP, which restarts every dead instance (same config, same ports)
  and rewrites ``last-up.json``. Unknown ``--key value`` pairs go into ``UpOptions.extra``
  (values parsed as JSON when they parse: ``--shards 4`` is the int 4).
* ``giants run ROLE --system S --config FILE``  serve one instance (what ``up`` runs)
* ``giants sim SYSTEM|--spec FILE --seed N --nemesis KIND[,KIND] --ops K``
* ``giants demo [SYSTEM]``             every (or one) system's demo; a pass/fail table
* ``giants trace FILE [-o OUT.html]``   render a trace as an HTML space-time diagram

``--plugin module:attr`` (repeatable, anywhere on the line) registers an extra plugin
object besides the installed entry points; the launcher passes it on to every child,
which is how tests launch systems that are not installed. ``--no-entry-points`` loads
only the ``--plugin`` ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from giants.core.cluster import LAST_UP, load_spec
from giants.core.errors import GiantsError
from giants.core.launcher import LocalCluster, load_plugin_objects
from giants.core.plugins import Registry, System, UpOptions, load_registry

__all__ = ["main", "build_parser", "parse_extra"]

MONITOR_POLL_S = 0.2
PARENT_POLL_S = 0.5


def parse_extra(tokens: Sequence[str]) -> dict[str, Any]:
    """``["--shards", "4", "--fast"]`` -> ``{"shards": 4, "fast": True}``; values are
    JSON when they parse as JSON, else strings. Raises ``GiantsError`` for a stray value."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise GiantsError(f"unexpected argument {tok!r}")
        key, eq, value = tok[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "true"
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
        i += 1
    return out


def _split_plugins(argv: list[str]) -> tuple[list[str], list[str], bool]:
    plugins, rest = [], []
    entry_points = True
    it = iter(argv)
    for tok in it:
        if tok == "--no-entry-points":
            entry_points = False
        elif tok == "--plugin":
            plugins.append(next(it, ""))
        elif tok.startswith("--plugin="):
            plugins.append(tok.split("=", 1)[1])
        else:
            rest.append(tok)
    return plugins, rest, entry_points


def _split_up_extras(up: argparse.ArgumentParser, tokens: list[str]
                     ) -> tuple[list[str], list[str]]:
    """Separate ``up``'s own options and positionals from the system's ``--key value``
    extras, so an extra's value is never taken for SYSTEM."""
    known: list[str] = []
    extra: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        name = tok.split("=", 1)[0]
        takes_value = i + 1 < len(tokens) and "=" not in tok
        action = up._option_string_actions.get(name)
        if action is not None:
            known.append(tok)
            if action.nargs != 0 and takes_value:
                known.append(tokens[i + 1])
                i += 1
        elif tok.startswith("--"):
            extra.append(tok)
            if takes_value and not tokens[i + 1].startswith("--"):
                extra.append(tokens[i + 1])
                i += 1
        else:
            known.append(tok)
        i += 1
    return known, extra


def build_parser(registry: Registry) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="giants", description="giants: classic distributed "
                                 "systems, runnable. 'giants list' shows what is installed.")
    ap.add_argument("--plugin", metavar="MODULE:ATTR", help="register an extra plugin "
                    "object (repeatable, accepted anywhere on the line)")
    ap.add_argument("--no-entry-points", action="store_true", help="load no installed "
                    "plugins, only --plugin ones (tests)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="installed systems, roles and capabilities").set_defaults(
        func=_cmd_list)

    up = sub.add_parser("up", help="run a system (or a spec) as local processes",
                        epilog="extra --key value pairs go to the system (UpOptions.extra)")
    up.add_argument("system", nargs="?")
    up.add_argument("--spec", help="a cluster spec TOML file instead of SYSTEM")
    up.add_argument("--nodes", type=int)
    up.add_argument("--base-port", type=int, default=0, help="0: pick free ports")
    up.add_argument("--data-dir", help="default .giants/data/SYSTEM")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--ready-timeout", type=float, default=60.0)
    up.set_defaults(func=_cmd_up)
    ap.set_defaults(up_parser=up)

    run = sub.add_parser("run", help="serve one instance of a role (what 'up' starts)")
    run.add_argument("role")
    run.add_argument("--system", required=True)
    run.add_argument("--config", required=True, help="the instance's config.json")
    run.add_argument("--exit-with-parent", action="store_true",
                     help="exit when the launching process goes away")
    run.set_defaults(func=_cmd_run)

    sim = sub.add_parser("sim", help="a seeded simulation with a nemesis and a checker")
    sim.add_argument("system", nargs="?")
    sim.add_argument("--spec", help="a cluster spec: simulate its first service's system")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--nemesis", default=None, help="KIND[,KIND...] ('none' for no faults)")
    sim.add_argument("--ops", type=int, default=500)
    sim.add_argument("--nodes", type=int, default=None)
    sim.add_argument("--trace-dir", default=".giants/traces")
    sim.add_argument("--html", action="store_true", help="also render the trace to HTML")
    sim.add_argument("--scenario", default=None,
                     help="a system-specific scenario instead of the KV workload (paxos: duel)")
    sim.set_defaults(func=_cmd_sim)

    demo = sub.add_parser("demo", help="run demos (all systems that have one, or one)")
    demo.add_argument("system", nargs="?")
    demo.add_argument("--trace-dir", default=".giants/traces")
    demo.add_argument("--data-dir", default=".giants/demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)

    tr = sub.add_parser("trace", help="render a trace file as an HTML space-time diagram")
    tr.add_argument("file")
    tr.add_argument("-o", "--output", help="default: FILE with .html")
    tr.add_argument("--axis", choices=("seq", "t"), default="seq",
                    help="time downwards by logical order (seq) or real time (t)")
    tr.add_argument("--start", type=int, default=0, help="first event shown (0-based)")
    tr.add_argument("--max-events", type=int, default=None)
    tr.set_defaults(func=_cmd_trace)

    pm = getattr(registry, "plugin_manager", None)
    if pm is not None:
        pm.hook.giants_add_commands(subparsers=sub, registry=registry)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    plugins, rest, entry_points = _split_plugins(list(sys.argv[1:] if argv is None else argv))
    try:
        registry = load_registry(load_plugin_objects(plugins), entry_points_too=entry_points)
        parser = build_parser(registry)
        extra: list[str] = []
        if rest[:1] == ["up"]:
            known, extra = _split_up_extras(parser.get_default("up_parser"), rest[1:])
            rest = ["up", *known]
        args = parser.parse_args(rest)
        args.plugins = plugins
        args.entry_points = entry_points
        args.registry = registry
        args.extra = parse_extra(extra)
        return int(args.func(args) or 0)
    except GiantsError as exc:
        print(f"giants: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# -- list ---------------------------------------------------------------------------------


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    reg: Registry = args.registry
    rows = [[s.name, ", ".join(s.roles), ", ".join(s.capabilities) or "-",
             ", ".join(x for x, f in (("demo", s.demo), ("sim", s.sim)) if f) or "-", s.summary]
            for s in reg.systems()]
    print(_table(rows, ["SYSTEM", "ROLES", "CAPABILITIES", "HAS", "SUMMARY"])
          if rows else "no systems installed")
    from giants.core.plugins import CAPABILITIES

    provided = [[c, ", ".join(reg.names(c))] for c in CAPABILITIES if reg.names(c)]
    if provided:
        print()
        print(_table(provided, ["CAPABILITY", "PROVIDED BY"]))
    return 0


# -- up / run -----------------------------------------------------------------------------


def _cmd_up(args: argparse.Namespace) -> int:
    if bool(args.spec) == bool(args.system):
        raise GiantsError("give either SYSTEM or --spec FILE")
    common: dict[str, Any] = dict(registry=args.registry, plugins=args.plugins,
                                  entry_points=args.entry_points,
                                  ready_timeout_s=args.ready_timeout, record=LAST_UP)
    if args.spec:
        cluster = LocalCluster.from_spec(load_spec(args.spec), **common)
    else:
        data_dir = args.data_dir or str(Path(".giants") / "data" / args.system)
        opts = UpOptions(args.nodes, args.base_port, data_dir, args.host, args.extra)
        cluster = LocalCluster(args.system, opts, **common)
    stop = _StopFlag()
    with stop.installed():
        info = cluster.start()
        try:
            print(json.dumps(info, sort_keys=True), flush=True)
            while not stop.requested:
                for name, code in cluster.reap():
                    print(f"giants: {name} exited with status {code} (left down; SIGHUP "
                          f"restarts it; log: {cluster.children[name].log_path})",
                          file=sys.stderr, flush=True)
                if stop.restart_requested:
                    stop.restart_requested = False
                    _restart_dead(cluster)
                time.sleep(MONITOR_POLL_S)
        finally:
            cluster.stop()
    return 0


def _restart_dead(cluster: LocalCluster) -> None:
    for name in list(cluster.children):
        if cluster.alive(name):
            continue
        try:
            pid = cluster.restart(name)
        except GiantsError as exc:
            print(f"giants: restarting {name} failed: {exc}", file=sys.stderr, flush=True)
        else:
            print(f"giants: {name} restarted as pid {pid}", file=sys.stderr, flush=True)


class _StopFlag:
    """SIGINT/SIGTERM set a flag instead of raising, so shutdown is orderly; SIGHUP asks
    for every dead instance to be restarted (``.giants/last-up.json`` gets the new pids)."""

    def __init__(self) -> None:
        self.requested = False
        self.restart_requested = False

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            self.restart_requested = True
        else:
            self.requested = True

    def installed(self) -> _StopFlag:
        self._old = {s: signal.signal(s, self._handler)
                     for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        return self

    def __enter__(self) -> _StopFlag:
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _cmd_run(args: argparse.Namespace) -> int:
    system: System = args.registry.system(args.system)
    role = system.roles.get(args.role)
    if role is None:
        raise GiantsError(f"{system.name} has no role {args.role!r} "
                          f"(roles: {', '.join(system.roles)})")
    try:
        config = json.loads(Path(args.config).read_text())
    except (OSError, ValueError) as exc:
        raise GiantsError(f"cannot read config {args.config}: {exc}") from None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s {config.get('name', args.role)} %(levelname)s "
                               "%(name)s: %(message)s")
    parent = os.getppid() if args.exit_with_parent else None
    trio.run(_serve, role.main, config, parent)
    return 0


async def _serve(main: Any, config: dict[str, Any], parent: int | None) -> None:
    """Run ``main(config)`` until it returns, SIGTERM/SIGINT, or the parent is gone."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_on_signal, nursery.cancel_scope)
            if parent is not None:
                nursery.start_soon(_watch_parent, nursery.cancel_scope, parent)
            await main(config)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the role's own error (or SystemExit), unwrapped
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def _on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logging.getLogger("giants.run").info("signal %d: shutting down", signum)
            scope.cancel()
            return


async def _watch_parent(scope: trio.CancelScope, parent: int) -> None:
    while os.getppid() == parent:
        await trio.sleep(PARENT_POLL_S)
    logging.getLogger("giants.run").warning("launcher %d is gone: shutting down", parent)
    scope.cancel()


# -- sim / demo / trace -------------------------------------------------------------------


def _cmd_sim(args: argparse.Namespace) -> int:
    if args.spec:
        spec = load_spec(args.spec)
        args.cluster_spec = spec
        args.system = args.system or spec.services[0].system
        if args.nodes is None:
            args.nodes = spec.services[0].nodes
    if not args.system:
        raise GiantsError("give SYSTEM or --spec FILE")
    system: System = args.registry.system(args.system)
    if system.sim is None:
        have = ", ".join(s.name for s in args.registry.systems() if s.sim) or "none"
        raise GiantsError(f"{system.name} has no simulation (systems with one: {have})")
    started = time.time()
    code = int(system.sim(args) or 0)
    if args.html:
        for path in sorted(Path(args.trace_dir).glob("*.trace.jsonl")):
            if path.stat().st_mtime >= started - 1:
                from giants.core.trace_html import render_file

                print(f"html: {render_file(path)}")
    print(f"verdict: {'PASS' if code == 0 else 'FAIL'} ({system.name}, seed {args.seed})")
    return code


def _cmd_demo(args: argparse.Namespace) -> int:
    reg: Registry = args.registry
    if args.system:
        system = reg.system(args.system)
        if system.demo is None:
            raise GiantsError(f"{system.name} has no demo")
        systems = [system]
    else:
        systems = [s for s in reg.systems() if s.demo is not None]
    rows = []
    for s in systems:
        print(f"=== demo: {s.name} ===", flush=True)
        t0 = time.monotonic()
        try:
            assert s.demo is not None
            ok = int(s.demo(args) or 0) == 0
            note = ""
        except Exception as exc:  # one failing demo must not hide the others' results
            ok, note = False, f"{type(exc).__name__}: {exc}"
            print(f"demo {s.name} raised {note}", file=sys.stderr)
        rows.append([s.name, "PASS" if ok else "FAIL", f"{time.monotonic() - t0:.1f}s", note])
    print()
    print(_table(rows, ["SYSTEM", "RESULT", "TIME", "NOTE"]) if rows else "no demos installed")
    return 0 if rows and all(r[1] == "PASS" for r in rows) else 1


def _cmd_trace(args: argparse.Namespace) -> int:
    from giants.core.trace_html import DEFAULT_MAX_EVENTS, render_file

    if not Path(args.file).exists():
        raise GiantsError(f"no trace file {args.file}")
    out = render_file(args.file, args.output, axis=args.axis, start=args.start,
                      max_events=args.max_events or DEFAULT_MAX_EVENTS)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
