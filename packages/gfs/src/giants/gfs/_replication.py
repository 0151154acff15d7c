"""Replica placement, re-replication and rebalancing (GFS paper §4.2, §4.3).

Pure planning functions over the metadata and the location table; the master carries
the plans out (``Clone`` / ``DropChunk`` messages) and bounds how many run at once.

* **Placement** (§4.3 "Creation"): a new chunk goes to the live chunkservers holding
  the fewest chunks (our stand-in for "below-average disk utilization"), ties broken
  by the seeded rng; we have no racks, so rack spreading is not modelled.
* **Re-replication** (§4.3): chunks below the replication goal are cloned, the chunk
  furthest below its goal first, chunks of live files before chunks of deleted files.
  The source is any up-to-date replica, the target the least-loaded server without one.
* **Rebalancing** (§4.3): when the most-loaded server holds more than
  ``REBALANCE_SLACK`` chunks above the least-loaded one, one chunk moves (clone to the
  light server; the now excess replica is dropped from the heaviest holder).
"""

from __future__ import annotations

from giants.core.process import Rng
from giants.gfs._locations import Locations
from giants.gfs._metadata import Metadata

__all__ = ["place", "plan_clones", "plan_drops", "plan_rebalance", "REBALANCE_SLACK"]

# Servers within this many chunks of each other count as balanced: moving a chunk for
# a difference of one would only swap which server is heavier.
REBALANCE_SLACK = 2


def _by_load(locs: Locations, candidates: list[str], rng: Rng) -> list[str]:
    order = list(candidates)
    rng.shuffle(order)
    return sorted(order, key=locs.load)


def place(locs: Locations, n: int, rng: Rng) -> list[str]:
    """Up to ``n`` live chunkservers for a new chunk, least loaded first."""
    return _by_load(locs, locs.live(), rng)[:n]


def plan_clones(md: Metadata, locs: Locations, goal: int, busy: set[int], slots: int,
                rng: Rng) -> list[tuple[int, str, str]]:
    """``(handle, source, target)`` clones for the most urgent under-replicated chunks.
    ``busy`` chunks (leased, cloning, being copied) are skipped."""
    if slots <= 0:
        return []
    live = md.live_handles()
    urgent = []
    for h, v in md.versions.items():
        n = len(locs.of(h))
        if v > 0 and 0 < n < goal and h not in busy:
            urgent.append((-(goal - n), h not in live, h))
    urgent.sort()
    plans = []
    for _, _, h in urgent:
        holders = locs.of(h)
        targets = [cs for cs in locs.live() if cs not in holders]
        if not targets:
            continue
        source = rng.choice(sorted(holders))
        plans.append((h, source, _by_load(locs, targets, rng)[0]))
        if len(plans) >= slots:
            break
    return plans


def plan_drops(md: Metadata, locs: Locations, goal: int, busy: set[int]
               ) -> list[tuple[int, str]]:
    """``(handle, chunkserver)``: excess replicas to remove, from the heaviest holder."""
    drops = []
    for h in md.versions:
        holders = locs.of(h)
        if len(holders) > goal and h not in busy:
            heaviest = max(sorted(holders), key=locs.load)
            drops.append((h, heaviest))
    return drops


def plan_rebalance(md: Metadata, locs: Locations, busy: set[int], rng: Rng
                   ) -> tuple[int, str, str] | None:
    """One ``(handle, source, target)`` move from the heaviest to the lightest server."""
    live = locs.live()
    if len(live) < 2:
        return None
    order = _by_load(locs, live, rng)
    light, heavy = order[0], order[-1]
    if locs.load(heavy) - locs.load(light) <= REBALANCE_SLACK:
        return None
    candidates = sorted(h for h in locs.servers[heavy].chunks
                        if h not in busy and light not in locs.of(h)
                        and md.versions.get(h, 0) > 0)
    if not candidates:
        return None
    return rng.choice(candidates), heavy, light
