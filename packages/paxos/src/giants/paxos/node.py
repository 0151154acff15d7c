"""The Paxos KV node as a real server (the thin driver).

A node is ``ReplicatedService(KVStateMachine)`` over the ``MultiPaxos`` core, hosted by
the core's ``serve_replicated`` (one TCP port for peers and clients, SQLite durable
state with group commit: persist, then send). Nothing protocol-specific lives here.
"""

from __future__ import annotations

from typing import Any

import trio

from giants.core.kv import KVStateMachine
from giants.core.rsm_server import serve_replicated
from giants.paxos._core import paxos_factory

__all__ = ["serve_node"]


async def serve_node(config: dict[str, Any], *,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve one Paxos KV node (config as ``giants.core.rsm_server`` documents) until
    cancelled."""
    await serve_replicated(config, paxos_factory, KVStateMachine, task_status=task_status)
