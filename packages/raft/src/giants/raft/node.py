"""The Raft KV node as a real process: the thin trio driver.

``serve_node(config)`` hosts a ``ReplicatedService`` (the core's KV state machine on
``RaftCore``) with the core's host (``giants.core.host.run_process``: group commit --
one durable SQLite write for a whole batch of requests, then the sends) on one TCP
endpoint for peers and clients alike. The config dict is ``rsm_server``'s (written by
``plan_replicated``; ``join: true`` starts a node with no configuration, to be added
by the leader as a learner).

What this adds to ``giants.core.rsm_server.serve_replicated``: the endpoint's address
book follows Raft's configuration. After every process call ``PeerBook`` compares the
core's membership with what the endpoint knows and calls ``endpoint.set_peers`` when a
server was added (``add_learner`` carries its address) -- so a leader can reach a new
learner, and a promoted node can reach everyone.
"""

from __future__ import annotations

from typing import Any

import trio

from giants.core.consensus import ConsensusConfig
from giants.core.envelope import Envelope
from giants.core.host import run_process
from giants.core.kv import KVStateMachine
from giants.core.process import Durable, Io
from giants.core.rsm import ReplicatedService
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.transport import Endpoint, tcp
from giants.raft._core import raft_factory

__all__ = ["serve_node", "PeerBook"]


class PeerBook:
    """A ``Process`` wrapper (driver layer) keeping ``endpoint``'s peers in step with the
    consensus configuration of ``service``."""

    def __init__(self, service: ReplicatedService, endpoint: Endpoint,
                 initial: dict[str, str]) -> None:
        self.service = service
        self.endpoint = endpoint
        self.book = dict(initial)

    def start(self, io: Io) -> None:
        self.service.start(io)
        self._sync()

    def receive(self, io: Io, env: Envelope) -> None:
        self.service.receive(io, env)
        self._sync()

    def tick(self, io: Io) -> None:
        self.service.tick(io)
        self._sync()

    def _sync(self) -> None:
        members = self.service.consensus.members()
        wanted = {**self.book, **members.voters, **members.learners}
        wanted.pop(self.service.node_id, None)
        if wanted != self.book:
            self.book = wanted
            self.endpoint.set_peers(wanted)


async def serve_node(config: dict[str, Any], *,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve one Raft KV node until cancelled (see the module docstring)."""
    node_id = config["node_id"]
    peers = dict(config["peers"])
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    store = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url)
    cconfig = ConsensusConfig(node_id=node_id, peers=peers, join=bool(config.get("join", False)),
                              options=dict(config.get("options", {})))
    snapshot_every = int(config.get("snapshot_every", 1000))
    others = {k: v for k, v in peers.items() if k != node_id}
    try:
        async with tcp.serve(node_id, listen=config["listen"], peers=others) as ep:

            def factory(durable: Durable) -> PeerBook:
                service = ReplicatedService(KVStateMachine(), raft_factory, cconfig, durable,
                                            snapshot_every=snapshot_every)
                return PeerBook(service, ep, others)

            await run_process(factory, node_id=node_id, endpoint=ep, store=store,
                              tick_s=float(config.get("tick_s", 0.01)), task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await store.close()
        data_dir.unlock()
