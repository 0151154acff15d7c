"""giants 2PL: a sans-I/O lock manager for strict two-phase locking.

Eswaran, Gray, Lorie, Traiger, "The Notions of Consistency and Predicate Locks in a
Database System" (CACM 1976); Gray et al., "Granularity of Locks" (1976); Bernstein,
Hadzilacos, Goodman, "Concurrency Control and Recovery in Database Systems" (1987).
"""

from giants.twopl._deadlock import DeadlockPolicy, find_cycle
from giants.twopl._manager import (
    MAX_REMEMBERED_ABORTS,
    Aborted,
    Granted,
    LockEvent,
    LockManager,
    Resource,
)
from giants.twopl._modes import COMPATIBLE, LockMode, compatible, covers, intention_for, supremum

__all__ = [
    "COMPATIBLE",
    "MAX_REMEMBERED_ABORTS",
    "Aborted",
    "DeadlockPolicy",
    "Granted",
    "LockEvent",
    "LockManager",
    "LockMode",
    "Resource",
    "compatible",
    "covers",
    "find_cycle",
    "intention_for",
    "supremum",
]
