"""giants.paxos: Basic Paxos and Multi-Paxos (Lamport, "Paxos Made Simple", 2001).

* ``MultiPaxos`` / ``paxos_factory`` -- the consensus plugin ``paxos`` (a sans-I/O
  ``ConsensusCore``): stable leader, phase 1 once, pipelined phase 2, no-op gap filling,
  catch-up, snapshots, alpha-window membership changes, optional leases.
* ``BasicPaxosNode`` -- single-decree Paxos (proposer, acceptor, learner).
* ``KVClient`` -- the replicated KV service's client (the core's, re-exported).
"""

from __future__ import annotations

from giants.paxos._basic import BasicPaxosNode
from giants.paxos._core import DEFAULT_OPTIONS, MultiPaxos, paxos_factory
from giants.paxos.client import KVClient

__all__ = ["BasicPaxosNode", "DEFAULT_OPTIONS", "KVClient", "MultiPaxos", "paxos_factory"]
