"""The Raft KV node as a real process: the thin trio driver.

``serve_node(config)`` hosts a ``ReplicatedService`` (the core's KV state machine on
``RaftCore``) with the core's host (``giants.core.host.run_process``: group commit --
one durable SQLite write for a whole batch of requests, then the sends) on one TCP
endpoint for peers and clients alike. The config dict is ``rsm_server``'s (written by
``plan_replicated``; ``join: true`` starts a node with no configuration, to be added
by the leader as a learner).

What this adds to ``giants.core.rsm_server.serve_replicated``:

* the endpoint's address book follows Raft's configuration. After every process call
  ``PeerBook`` compares the core's membership with what the endpoint knows and calls
  ``endpoint.set_peers`` when a server was added (``add_learner`` carries its address)
  -- so a leader can reach a new learner, and a promoted node can reach everyone;
* the leader writes its log to disk *in parallel* with replicating it (dissertation
  §10.2.1). The host's contract is "persist, then send" for every message of a call;
  ``EarlyAppendStore`` relaxes it for the leader's AppendEntries only: when the host
  flushes a call, the AppendEntries it queued leave while the durable write is under
  way, everything else after it. Safe because the leader counts itself towards a commit
  only in a later call, which the host starts after this flush's write is durable; a
  leader that crashes first simply lost entries it had not committed (§10.2.1). This
  takes one of the two fsyncs off every write's critical path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from giants.core.consensus import ConsensusConfig
from giants.core.envelope import Envelope
from giants.core.host import DurableStore, run_process
from giants.core.kv import KVStateMachine
from giants.core.process import Durable, Io, PersistOp
from giants.core.rsm import ReplicatedService
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.transport import Endpoint, tcp
from giants.raft._core import raft_factory
from giants.raft._messages import AppendEntries

__all__ = ["serve_node", "host_node", "PeerBook", "EarlyAppendStore"]


class PeerBook:
    """A ``Process`` wrapper (driver layer) keeping ``endpoint``'s peers in step with the
    consensus configuration of ``service``."""

    def __init__(self, service: ReplicatedService, endpoint: Endpoint,
                 initial: dict[str, str]) -> None:
        self.service = service
        self.endpoint = endpoint
        self.book = dict(initial)
        self.current_io: Io | None = None     # the call the host is about to flush

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


class EarlyAppendStore:
    """A ``DurableStore`` wrapper: while the real store persists a call's writes, the
    leader's AppendEntries of that call are already on their way (module docstring)."""

    def __init__(self, store: DurableStore, endpoint: Endpoint) -> None:
        self.store = store
        self.endpoint = endpoint
        self.book: PeerBook | None = None

    async def load(self) -> Durable:
        return await self.store.load()

    async def close(self) -> None:
        await self.store.close()

    async def apply(self, ops: Sequence[PersistOp]) -> None:
        io = self.book.current_io if self.book is not None else None
        early = [] if io is None else [e for e in io.sends if type(e.body) is AppendEntries]
        if not early:
            await self.store.apply(ops)
            return
        assert io is not None
        io.sends[:] = [e for e in io.sends if type(e.body) is not AppendEntries]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.endpoint.send_many, early)
            await self.store.apply(ops)


async def host_node(endpoint: Endpoint, store: DurableStore, config: ConsensusConfig, *,
                    snapshot_every: int = 1000, tick_s: float = 0.01,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Host one Raft KV node on an open endpoint and store until cancelled (any
    transport: ``serve_node`` uses TCP, the driver tests the memory transport)."""
    early = EarlyAppendStore(store, endpoint)
    others = {k: v for k, v in config.peers.items() if k != config.node_id}

    def factory(durable: Durable) -> PeerBook:
        service = ReplicatedService(KVStateMachine(), raft_factory, config, durable,
                                    snapshot_every=snapshot_every)
        early.book = PeerBook(service, endpoint, others)
        return early.book

    await run_process(factory, node_id=config.node_id, endpoint=endpoint, store=early,
                      tick_s=tick_s, task_status=task_status)


async def serve_node(config: dict[str, Any], *,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve one Raft KV node until cancelled (see the module docstring)."""
    node_id = config["node_id"]
    peers = dict(config["peers"])
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    sql = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url)
    cconfig = ConsensusConfig(node_id=node_id, peers=peers, join=bool(config.get("join", False)),
                              options=dict(config.get("options", {})))
    others = {k: v for k, v in peers.items() if k != node_id}
    try:
        async with tcp.serve(node_id, listen=config["listen"], peers=others) as ep:
            await host_node(ep, sql, cconfig, snapshot_every=int(config.get("snapshot_every", 1000)),
                            tick_s=float(config.get("tick_s", 0.01)), task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await sql.close()
        data_dir.unlock()
