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

Two driver-level helpers any consensus plugin may use:

* ``PeerBook`` keeps the endpoint's address book in step with the consensus
  membership after every call, so a leader reaches a learner it just added (its
  address came with ``add_learner``) and a promoted node reaches everyone.
* ``early_send`` (a predicate on message bodies): the leader's replication messages
  (Raft's AppendEntries, Paxos' Accept) leave *while* the call's durable write is under
  way instead of after it (Raft dissertation §10.2.1; the same holds for a Multi-Paxos
  leader's own acceptance). Safe only for a consensus core that counts its own vote
  towards a decision in a *later* call than the one that wrote it: the host starts the
  next call only after this flush's write is durable. Everything else still follows
  "persist, then send".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import trio

from giants.core.consensus import ConsensusConfig, ConsensusFactory, StateMachine
from giants.core.envelope import Envelope
from giants.core.host import DurableStore, run_process
from giants.core.plugins import Instance, UpOptions
from giants.core.process import Durable, Io, PersistOp
from giants.core.rsm import ReplicatedService
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.transport import Endpoint, tcp

__all__ = ["serve_replicated", "plan_replicated", "PeerBook", "EarlySendStore"]


class PeerBook:
    """A ``Process`` wrapper around a ``ReplicatedService`` that keeps ``endpoint``'s
    address book equal to the initial peers plus every voter and learner the consensus
    core knows (module docstring). ``current_io`` is the call being flushed."""

    def __init__(self, service: ReplicatedService, endpoint: Endpoint,
                 initial: dict[str, str]) -> None:
        self.service = service
        self.endpoint = endpoint
        self.book = {k: v for k, v in initial.items() if k != service.node_id}
        self.current_io: Io | None = None

    def start(self, io: Io) -> None:
        self.current_io = io
        self.service.start(io)
        self._sync()

    def receive(self, io: Io, env: Envelope) -> None:
        self.current_io = io
        self.service.receive(io, env)
        self._sync()

    def tick(self, io: Io) -> None:
        self.current_io = io
        self.service.tick(io)
        self._sync()

    def _sync(self) -> None:
        members = self.service.consensus.members()
        wanted = {**self.book, **members.voters, **members.learners}
        wanted.pop(self.service.node_id, None)
        if wanted != self.book:
            self.book = wanted
            self.endpoint.set_peers(wanted)


class EarlySendStore:
    """A ``DurableStore`` wrapper: while ``store`` persists a call's writes, that call's
    messages matching ``early(body)`` are already being sent (module docstring)."""

    def __init__(self, store: DurableStore, endpoint: Endpoint,
                 early: Callable[[Any], bool]) -> None:
        self.store = store
        self.endpoint = endpoint
        self.early = early
        self.book: PeerBook | None = None

    async def load(self) -> Durable:
        return await self.store.load()

    async def close(self) -> None:
        await self.store.close()

    async def apply(self, ops: Sequence[PersistOp]) -> None:
        io = self.book.current_io if self.book is not None else None
        first = [] if io is None else [e for e in io.sends if self.early(e.body)]
        if io is None or not first:
            await self.store.apply(ops)
            return
        io.sends[:] = [e for e in io.sends if not self.early(e.body)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.endpoint.send_many, first)
            await self.store.apply(ops)


async def serve_replicated(
    config: dict[str, Any],
    consensus_factory: ConsensusFactory,
    sm_factory: Callable[[], StateMachine],
    *,
    early_send: Callable[[Any], bool] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve one replicated-service node until cancelled. ``early_send``: see the
    module docstring (None: every message waits for the durable write)."""
    node_id = config["node_id"]
    peers = dict(config["peers"])
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    sql = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url)
    store: DurableStore = sql
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
            if early_send is None:
                await run_process(factory, node_id=node_id, endpoint=ep, store=store,
                                  tick_s=float(config.get("tick_s", 0.01)),
                                  task_status=task_status)
                return
            early = EarlySendStore(sql, ep, early_send)

            def booked(durable: Durable) -> PeerBook:
                early.book = PeerBook(factory(durable), ep, peers)
                return early.book

            await run_process(booked, node_id=node_id, endpoint=ep, store=early,
                              tick_s=float(config.get("tick_s", 0.01)),
                              task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await sql.close()
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
