"""Chunk locations, learned from chunkserver heartbeats (GFS paper §2.6.2, §4.5).

The master does not persist which chunkserver holds which chunk: "the chunkserver has
the final word over what chunks it does or does not have". Every heartbeat carries the
chunkserver's full chunk report ``(handle, version, length)``; ``Locations.report``
replaces that server's entry with it and classifies each replica:

* **up to date** -- its version equals the master's: it becomes a location;
* **stale** (§4.5) -- its version is older: it missed mutations while it was down. It is
  never handed to clients; it is deleted, but only while another up-to-date replica is
  alive (so a bookkeeping slip can never delete the last copy);
* **newer** -- the master failed after a chunkserver took a version the master had not
  yet logged: the master adopts the higher version (§4.5);
* **orphaned** (§4.4) -- the handle is not in the master's metadata (its file was
  reclaimed, or a copy never got logged): deleted.

A chunkserver silent for ``dead_after_s`` is declared dead and its replicas forgotten.
Shared by the master and the shadow masters (which learn locations the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ChunkserverInfo", "Locations", "ReportOutcome"]


@dataclass
class ChunkserverInfo:
    address: str
    last_seen: float
    chunks: dict[int, int] = field(default_factory=dict)  # handle -> version reported
    lengths: dict[int, int] = field(default_factory=dict)


@dataclass
class ReportOutcome:
    delete: list[tuple[int, int]] = field(default_factory=list)  # (handle, version)
    stale: list[int] = field(default_factory=list)
    adopt: list[tuple[int, int]] = field(default_factory=list)  # (handle, newer version)


class Locations:
    """Which live chunkserver holds an up-to-date replica of which chunk."""

    def __init__(self) -> None:
        self.servers: dict[str, ChunkserverInfo] = {}
        self._where: dict[int, set[str]] = {}

    def of(self, handle: int) -> set[str]:
        return self._where.get(handle, set())

    def add(self, handle: int, cs: str, version: int, length: int = 0) -> None:
        info = self.servers.get(cs)
        if info is None:
            return
        info.chunks[handle] = version
        info.lengths[handle] = length
        self._where.setdefault(handle, set()).add(cs)

    def discard(self, handle: int, cs: str) -> None:
        info = self.servers.get(cs)
        if info is not None:
            info.chunks.pop(handle, None)
            info.lengths.pop(handle, None)
        holders = self._where.get(handle)
        if holders is not None:
            holders.discard(cs)
            if not holders:
                del self._where[handle]

    def forget_chunk(self, handle: int) -> None:
        for cs in list(self.of(handle)):
            self.discard(handle, cs)

    def report(self, cs: str, address: str, now: float,
               chunks: list[tuple[int, int, int]], versions: dict[int, int],
               keep: set[int], attempts: dict[int, int] | None = None) -> ReportOutcome:
        """Replace ``cs``'s replicas with its report. ``versions`` is the master's
        handle -> current version table, ``attempts`` the versions incomplete grants
        tried (a replica at one of those is current too: no mutation ran under them);
        ``keep`` holds handles that must not be called orphans (copies in progress)."""
        attempts = attempts or {}
        info = self.servers.get(cs)
        if info is None:
            info = self.servers[cs] = ChunkserverInfo(address, now)
        info.address, info.last_seen = address, now
        for h in list(info.chunks):
            self.discard(h, cs)
        out = ReportOutcome()
        for h, v, length in chunks:
            current = versions.get(h)
            if current is None:
                if h not in keep:
                    out.delete.append((h, v))
            elif v < current:
                if any(o != cs and self.servers[o].chunks.get(h, 0) >= current
                       for o in self.of(h)):
                    out.delete.append((h, v))
                    out.stale.append(h)
            else:
                if v > max(current, attempts.get(h, 0)):
                    out.adopt.append((h, v))
                self.add(h, cs, v, length)
        return out

    def expire(self, now: float, dead_after_s: float) -> list[str]:
        """Declare silent chunkservers dead; returns them."""
        dead = [cs for cs, info in self.servers.items() if now - info.last_seen > dead_after_s]
        for cs in dead:
            for h in list(self.servers[cs].chunks):
                self.discard(h, cs)
            del self.servers[cs]
        return sorted(dead)

    def live(self) -> list[str]:
        return sorted(self.servers)

    def load(self, cs: str) -> int:
        return len(self.servers[cs].chunks)

    def addresses(self, names: set[str] | list[str]) -> dict[str, str]:
        return {n: self.servers[n].address for n in names if n in self.servers}

    def length(self, handle: int) -> int:
        """The largest length any live replica reported (for stat)."""
        return max((self.servers[cs].lengths.get(handle, 0) for cs in self.of(handle)),
                   default=0)
