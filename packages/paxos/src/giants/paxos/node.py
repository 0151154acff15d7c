"""The Paxos KV node as a real server (the thin driver).

A node is ``ReplicatedService(KVStateMachine)`` over the ``MultiPaxos`` core, hosted by
the core's ``serve_replicated``: one TCP port for peers and clients, SQLite durable
state with group commit (persist, then send), an address book that follows the
configuration (``PeerBook``: a learner added with its address becomes reachable).

One relaxation of "persist, then send", for the leader's ``Accept`` messages only: they
leave while the leader's own acceptance of the same slots is being written (the
``early_send`` of ``giants.core.rsm_server``). Safe because the leader counts its own
acceptance towards a quorum only in a later call -- when a peer's ``Accepted`` arrives
-- and the host starts that call only after the write is durable; a leader that
crashes before then never acknowledged an acceptance it forgot. It takes one fsync off
every write's critical path (the other is the followers').
"""

from __future__ import annotations

from typing import Any

import trio

from giants.core.kv import KVStateMachine
from giants.core.rsm_server import serve_replicated
from giants.paxos._core import paxos_factory
from giants.paxos._messages import Accept

__all__ = ["serve_node", "sent_before_durable"]


def sent_before_durable(body: Any) -> bool:
    """The leader's phase-2a messages (see the module docstring)."""
    return type(body) is Accept


async def serve_node(config: dict[str, Any], *,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve one Paxos KV node (config as ``giants.core.rsm_server`` documents) until
    cancelled."""
    await serve_replicated(config, paxos_factory, KVStateMachine,
                           early_send=sent_before_durable, task_status=task_status)
