"""The gfs plugin: the ``gfs`` system (master, shadow, chunkserver roles), the
``filesystem`` capability named ``gfs``, and ``giants gfs ...`` commands."""

from __future__ import annotations

import argparse
import os
from typing import Any

from giants.core.plugins import Instance, Registry, Role, System, UpOptions, hookimpl

__all__ = ["giants_register_services", "giants_add_commands", "plan"]

DEFAULT_CHUNKSERVERS = 4
DEFAULT_SHADOWS = 1
# Options ``giants up gfs --key value`` passes to every role (with their defaults).
ROLE_OPTIONS: dict[str, Any] = {
    "chunk_size": 64 * 1024 * 1024, "replication": 3, "lease_s": 60.0, "heartbeat_s": 1.0,
    "dead_after_s": 5.0, "tick_s": 0.05, "trace": False, "gc_after_s": 3 * 24 * 3600.0,
    "gc_scan_s": 60.0, "checkpoint_every": 500, "max_clones": 8, "scan_every_s": 30.0,
    "rebalance_every_s": 30.0,
}


async def _master_main(config: dict[str, Any]) -> None:
    from giants.gfs.node import serve_master

    await serve_master(config)


async def _shadow_main(config: dict[str, Any]) -> None:
    from giants.gfs.node import serve_shadow

    await serve_shadow(config)


async def _chunkserver_main(config: dict[str, Any]) -> None:
    from giants.gfs.node import serve_chunkserver

    await serve_chunkserver(config)


def plan(opts: UpOptions) -> list[Instance]:
    """1 master, ``shadows`` shadow masters, ``nodes`` chunkservers on consecutive
    ports from ``base_port``."""
    n = opts.nodes or DEFAULT_CHUNKSERVERS
    shadows = [f"shadow-{i}" for i in range(int(opts.extra.get("shadows", DEFAULT_SHADOWS)))]
    names = [("master", "master")] + [("shadow", s) for s in shadows] + \
            [("chunkserver", f"cs-{i}") for i in range(n)]
    peers = {name: f"{opts.host}:{opts.base_port + i}" for i, (_, name) in enumerate(names)}
    common = {k: type(v)(opts.extra.get(k, v)) for k, v in ROLE_OPTIONS.items()}
    out = []
    for role, name in names:
        config = dict(common, node_id=name, listen=peers[name], peers=peers,
                      master="master", shadows=shadows,
                      data_dir=os.path.join(opts.data_dir, name))
        out.append(Instance(role=role, name=name, config=config, endpoint=peers[name]))
    return out


def _demo(args: Any) -> int:
    from giants.gfs.demo import run_demo

    return run_demo(args)


def _sim(args: Any) -> int:
    from giants.gfs.demo import run_sim

    return run_sim(args)


@hookimpl
def giants_register_services(registry: Registry) -> None:
    from giants.gfs.client import open_filesystem

    registry.provide("filesystem", "gfs", open_filesystem)
    registry.add_system(System(
        name="gfs",
        summary="the Google File System: master, shadow masters, chunkservers (SOSP 2003)",
        roles={
            "master": Role("master", _master_main, "namespace, leases, operation log"),
            "shadow": Role("shadow", _shadow_main, "read-only master following the log"),
            "chunkserver": Role("chunkserver", _chunkserver_main, "chunks on local disk"),
        },
        plan=plan,
        capabilities=("filesystem:gfs",),
        demo=_demo,
        sim=_sim,
        default_nodes=DEFAULT_CHUNKSERVERS,
    ))


@hookimpl
def giants_add_commands(subparsers: argparse._SubParsersAction, registry: Registry) -> None:  # type: ignore[type-arg]
    from giants.gfs.cli import add_commands

    add_commands(subparsers)
