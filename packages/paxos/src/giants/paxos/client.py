"""The Paxos KV service's client: the core's one ``KVClient``, re-exported.

Raft, Paxos and the core's ``kv`` system serve the same replicated KV service
(``giants.core.rsm`` over ``giants.core.kv``), so one client talks to all of them.
"""

from __future__ import annotations

from giants.core.kvclient import KVClient

__all__ = ["KVClient"]
