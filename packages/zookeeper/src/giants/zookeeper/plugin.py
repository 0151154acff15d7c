"""The ``zookeeper`` plugin: the ``zookeeper`` system, the ``coordination`` capability
(its lock/election/watch/small-file API is ZooKeeper's own, not the ``LockService``
protocol, so it is not offered as a ``lock_service``), and the ``giants zookeeper`` shell. Hook implementations
only.

Ports of ``giants up zookeeper --nodes N --base-port P``: server ``i`` serves clients
(jute, kazoo) on ``P + i`` and its peers on ``P + 100 + i``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from giants.core.plugins import Instance, Registry, Role, System, UpOptions, hookimpl

__all__ = ["giants_register_services", "giants_add_commands", "PEER_PORT_OFFSET", "plan"]

PEER_PORT_OFFSET = 100
# Raft tells followers about a commit with its next message. A server whose client waits
# for its own apply asks the leader for a prompt notice (``AwaitCommit``), so the
# heartbeat interval only bounds how far a follower's reads trail writes made through
# other servers: every other tick (20 ms) rather than every third. Overridable with
# ``options=...``.
# A follower that falls behind a pipelined burst is sent log entries, not the whole
# tree as a snapshot, while it is within 2,000 entries of the leader's snapshot.
DEFAULT_RAFT_OPTIONS = {"heartbeat_ticks": 2, "snapshot_trailing_entries": 2000}


async def _server_main(config: dict[str, Any]) -> None:
    from giants.zookeeper.node import serve_server

    await serve_server(config)


def plan(opts: UpOptions) -> list[Instance]:
    n = opts.nodes or 3
    names = [f"zk-{i}" for i in range(n)]
    peers = {name: f"{opts.host}:{opts.base_port + PEER_PORT_OFFSET + i}"
             for i, name in enumerate(names)}
    consensus = str(opts.extra.get("consensus", "raft"))
    out = []
    for i, name in enumerate(names):
        client = f"{opts.host}:{opts.base_port + i}"
        config = {
            "node_id": name,
            "listen": client,
            "peer_listen": peers[name],
            "peers": peers,
            "data_dir": os.path.join(opts.data_dir, name),
            "tick_s": float(opts.extra.get("tick_s", 0.01)),
            "consensus": consensus,
            "options": dict(opts.extra.get("options",
                                           DEFAULT_RAFT_OPTIONS if consensus == "raft" else {})),
            "zk": {k: int(opts.extra[k]) for k in ("tick_ms", "snapshot_every", "max_buffer")
                   if k in opts.extra},
            "storage_url": opts.extra.get("storage_url"),
            "sync": str(opts.extra.get("sync", "FULL")),
        }
        out.append(Instance(role="server", name=name, config=config, endpoint=client))
    return out


def _sim(args: Any) -> int:
    from giants.zookeeper.sim import run_sim_cli

    return run_sim_cli(args)


def _demo(args: Any) -> int:
    from giants.zookeeper.demo import run_demo

    return run_demo(args)


def _coordination(endpoints: str | list[str], **options: Any) -> Any:
    """``factory(endpoints, **options)`` -> ``async with`` -> ``Coordination``."""
    from giants.zookeeper.coordination import connect

    return connect(endpoints, **options)


@hookimpl
def giants_register_services(registry: Registry) -> None:
    registry.provide("coordination", "zookeeper", _coordination)
    registry.add_system(System(
        name="zookeeper",
        summary="ZooKeeper ensemble (jute protocol, kazoo-compatible) on a consensus plugin",
        roles={"server": Role("server", _server_main, "a ZooKeeper server (client + peer port)")},
        plan=plan,
        capabilities=("coordination:zookeeper",),
        demo=_demo,
        sim=_sim,
        default_nodes=3,
    ))


@hookimpl
def giants_add_commands(subparsers: argparse._SubParsersAction, registry: Registry) -> None:  # type: ignore[type-arg]
    from giants.zookeeper.cli import add_commands

    add_commands(subparsers)
