"""giants-raft: Raft consensus (Ongaro & Ousterhout, ATC 2014; Ongaro's dissertation)
as the ``raft`` consensus plugin, and the replicated KV service on it.

``RaftCore`` is the sans-I/O protocol core (``giants.core.consensus.ConsensusCore``);
``raft_factory`` is what ``registry.consensus("raft")`` returns; ``KVClient`` is the
core's KV client (one client for every replicated KV service).
"""

from giants.core.kvclient import KVClient
from giants.raft._core import RaftCore, raft_factory
from giants.raft._options import RaftOptions

__all__ = ["RaftCore", "RaftOptions", "raft_factory", "KVClient"]
