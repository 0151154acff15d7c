"""Running a ``ReplicatedService`` as a real server, and planning a cluster of them.

Shared by every package whose server is "a state machine on a consensus plugin"
(the core's ``kv`` system on ``solo``, Raft's and Paxos' KV services, ...).

A node's config dict (written by the launcher, read by ``giants run``)::

    {"node_id": "node-0", "listen": "127.0.0.1:7000",
     "peers": {"node-0": "127.0.0.1:7000", ...},   # initial voters, ids -> addresses
     "data_dir": ".giants/raft/node-0", "tick_s": 0.01, "join": false,
     "options": {...plugin options...}, "snapshot_every": 1000,
     "storage_url": null}                            # any SQLAlchemy URL; default SQLite

One TCP port serves both peers and clients: peer messages and client requests are all
envelopes, told apart by their message type.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import trio

from giants.core.consensus import ConsensusConfig, ConsensusFactory, StateMachine
from giants.core.host import run_process
from giants.core.plugins import Instance, UpOptions
from giants.core.process import Durable
from giants.core.rsm import ReplicatedService
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.transport import tcp

__all__ = ["serve_replicated", "plan_replicated"]


async def serve_replicated(
    config: dict[str, Any],
    consensus_factory: ConsensusFactory,
    sm_factory: Callable[[], StateMachine],
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve one replicated-service node until cancelled."""
    node_id = config["node_id"]
    peers = dict(config["peers"])
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    store = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url)
    cconfig = ConsensusConfig(
        node_id=node_id, peers=peers, join=bool(config.get("join", False)),
        options=dict(config.get("options", {})),
    )
    snapshot_every = int(config.get("snapshot_every", 1000))

    def factory(durable: Durable) -> ReplicatedService:
        return ReplicatedService(sm_factory(), consensus_factory, cconfig, durable,
                                 snapshot_every=snapshot_every)

    try:
        async with tcp.serve(node_id, listen=config["listen"], peers=peers) as ep:
            await run_process(factory, node_id=node_id, endpoint=ep, store=store,
                              tick_s=float(config.get("tick_s", 0.01)),
                              task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await store.close()
        data_dir.unlock()


def plan_replicated(role: str, opts: UpOptions, *, default_nodes: int = 3,
                    options: dict[str, Any] | None = None) -> list[Instance]:
    """``n`` nodes of ``role`` on consecutive ports from ``opts.base_port``."""
    n = opts.nodes or default_nodes
    names = [f"{role}-{i}" for i in range(n)]
    addrs = {name: f"{opts.host}:{opts.base_port + i}" for i, name in enumerate(names)}
    out = []
    for name in names:
        config = {
            "node_id": name,
            "listen": addrs[name],
            "peers": addrs,
            "data_dir": os.path.join(opts.data_dir, name),
            "tick_s": float(opts.extra.get("tick_s", 0.01)),
            "options": dict(options or {}),
            "snapshot_every": int(opts.extra.get("snapshot_every", 1000)),
            "storage_url": opts.extra.get("storage_url"),
        }
        out.append(Instance(role=role, name=name, config=config, endpoint=addrs[name]))
    return out
