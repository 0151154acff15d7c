"""Deadlock handling for the lock manager (Bernstein, Hadzilacos, Goodman 1987, §3.4;
Rosenkrantz, Stearns, Lewis 1978 for wait-die and wound-wait).

Four policies, selected per lock manager:

``detect``      Keep the waits-for graph; whenever a request waits, look for a cycle and
                abort one victim per cycle: the *youngest* transaction in it (the one
                with the latest timestamp: it has done the least work, and the oldest is
                never starved). Aborts only when a deadlock really exists, at the cost of
                a graph search on every wait; it sees only local cycles, so a sharded
                store reports its graphs to a global detector (giants-2pc's coordinator)
                and backs that with a wait timeout.
``wait-die``    Non-preemptive prevention by timestamp: an older requester waits for a
                younger holder, a younger requester "dies" (aborts) instead of waiting for
                an older one. Every wait goes old -> young, so no cycle can form, across
                shards too, with no graph; but it aborts transactions that were never in a
                deadlock, and young transactions may die repeatedly (they keep their
                timestamp on retry, so they eventually become the oldest).
``wound-wait``  Preemptive prevention: an older requester "wounds" (aborts) a younger
                holder, a younger requester waits. Every wait goes young -> old. Fewer
                restarts than wait-die in practice (a young transaction waits rather than
                dies) and it is what Spanner uses; a prepared (2PC in-doubt) holder cannot
                be wounded, so the requester waits for its decision.
``timeout``     No graph and no timestamps: a request that waited ``wait_timeout_s``
                aborts. Trivial and works across shards, but it cannot tell a deadlock
                from a long wait: too short a timeout aborts healthy transactions, too
                long a one leaves deadlocked ones stuck.

``find_cycle`` is the graph search ``detect`` uses (deterministic: nodes visited in
sorted order).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from enum import StrEnum

from giants.core.graph import find_cycle as _find_cycle

__all__ = ["DeadlockPolicy", "find_cycle"]


class DeadlockPolicy(StrEnum):
    DETECT = "detect"
    WAIT_DIE = "wait-die"
    WOUND_WAIT = "wound-wait"
    TIMEOUT = "timeout"


def find_cycle(edges: Mapping[str, Set[str]]) -> list[str] | None:
    """A cycle of the directed graph ``edges`` (node -> successors) as a list of nodes,
    or None when the graph is acyclic (the core's shared depth-first search)."""
    cycle = _find_cycle(sorted(edges), lambda node: sorted(edges.get(str(node), ())))
    return None if cycle is None else [str(n) for n in cycle]
