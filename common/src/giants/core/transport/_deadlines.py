"""Request deadlines kept by one timer task instead of a cancel scope per request.

A trio cancel scope with a deadline costs about as much CPU as a loopback round trip's
worth of our own code (entering, registering the deadline, leaving), and every client
request needs one. So a client keeps its requests' deadlines in one heap, and a single
timer task sleeps until the earliest and expires whatever is due. A request that
finished before its deadline stays in the heap until then (removing it would cost more
than it saves); the heap is compacted when finished entries pile up, so it stays
proportional to the requests in flight.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio

__all__ = ["Expirable", "DeadlineTimer"]

# Entries kept before the first compaction; after one, twice what survived it.
COMPACT_MIN_ENTRIES = 4096


class Expirable(Protocol):
    finished: bool

    async def expire(self) -> None:
        """The deadline passed and ``finished`` is still False."""
        ...


class DeadlineTimer:
    """Calls ``item.expire()`` once ``item``'s deadline passes, unless it finished."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Expirable]] = []
        self._seq = itertools.count()
        self._scope: trio.CancelScope | None = None
        self._compact_at = COMPACT_MIN_ENTRIES

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, deadline: float, item: Expirable) -> None:
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._seq), item))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline  # wake the timer earlier than it planned
        if len(heap) >= self._compact_at:
            heap[:] = [entry for entry in heap if not entry[2].finished]
            heapq.heapify(heap)
            self._compact_at = max(COMPACT_MIN_ENTRIES, 2 * len(heap))

    async def run(self) -> None:
        """The timer task: run it in the owner's nursery until cancelled."""
        heap = self._heap
        while True:
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                item = heapq.heappop(heap)[2]
                if not item.finished:
                    await item.expire()
