"""The Raft KV node as a real process: the thin trio driver.

``serve_node(config)`` is the core's ``serve_replicated`` (``giants.core.rsm_server``)
for the KV state machine on ``RaftCore``: the core's host (group commit -- one durable
SQLite write for a whole batch of requests, then the sends) on one TCP endpoint for
peers and clients alike; the config dict is ``plan_replicated``'s (``join: true``
starts a node with no configuration, to be added by the leader as a learner).

Two driver behaviours Raft turns on (both implemented in ``rsm_server``):

* ``PeerBook``: the endpoint's address book follows Raft's configuration, so a leader
  reaches a learner it just added (``add_learner`` carries its address);
* ``early_send=is_replication``: the leader's AppendEntries leave while its own log write
  is under way (dissertation §10.2.1). Safe because ``RaftCore`` counts the leader's own
  copy towards a commit only in a later call -- a commit needs a follower's reply, which
  the host handles only after this flush's write is durable -- and a leader that crashes
  first merely lost entries nobody committed. It takes one of the two fsyncs off every
  write's critical path.

``host_node`` runs the same stack on any open endpoint and store (the driver tests use
the memory transport).
"""

from __future__ import annotations

from typing import Any

import trio

from giants.core.consensus import ConsensusConfig
from giants.core.host import DurableStore, run_process
from giants.core.kv import KVStateMachine
from giants.core.process import Durable
from giants.core.rsm import ReplicatedService
from giants.core.rsm_server import EarlySendStore, PeerBook, serve_replicated
from giants.core.transport import Endpoint
from giants.raft._core import raft_factory
from giants.raft._messages import AppendEntries

__all__ = ["serve_node", "host_node", "is_replication"]


def is_replication(body: Any) -> bool:
    """The messages that may leave before the leader's own write is durable."""
    return type(body) is AppendEntries


async def host_node(endpoint: Endpoint, store: DurableStore, config: ConsensusConfig, *,
                    snapshot_every: int = 1000, tick_s: float = 0.01,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Host one Raft KV node on an open endpoint and store until cancelled."""
    early = EarlySendStore(store, endpoint, is_replication)

    def factory(durable: Durable) -> PeerBook:
        service = ReplicatedService(KVStateMachine(), raft_factory, config, durable,
                                    snapshot_every=snapshot_every)
        early.book = PeerBook(service, endpoint, dict(config.peers))
        return early.book

    await run_process(factory, node_id=config.node_id, endpoint=endpoint, store=early,
                      tick_s=tick_s, task_status=task_status)


async def serve_node(config: dict[str, Any], *,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve one Raft KV node over TCP until cancelled (see the module docstring)."""
    await serve_replicated(config, raft_factory, KVStateMachine, early_send=is_replication,
                           task_status=task_status)
