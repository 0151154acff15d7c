"""mcsqueal: the invalidation daemon's decisions, sans-I/O.

Scaling Memcache at Facebook §4.1 (Figure 6): a daemon on every database tails its commit
log, extracts the keys each committed write invalidates, **batches** them, and
broadcasts the deletes to every front-end cluster of the region (through each cluster's
mcrouter). Because the deletes come from the commit log, none is lost if a web server
crashes after writing, and they can be replayed.

``SquealCore`` is that loop's state: its ``position`` is the newest log entry whose
deletes *every* target has acknowledged. A round is: read entries after ``position``
(``next_read``), turn them into one batch of distinct keys per target
(``on_entries``), and wait for every target's acknowledgement (``on_ack``); a target that
does not answer within ``resend_after_s`` gets its batch again (``due``); deletes are
idempotent, so resending is safe. Only a complete round advances ``position`` -- the
host persists it and, after a restart, replays from there (at-least-once).

For each written key the batch carries the key itself and, when ``markers`` is on, the
key's remote marker (§5: the replica region's daemon clears the marker once replication
has brought the write to the region). Pure: time is an input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["SquealCore", "Batch", "marker_key", "RESEND_AFTER_S", "ROUND_MAX_ENTRIES"]

# Entries per round: bounds one batch (the paper batches to cut packets per delete).
ROUND_MAX_ENTRIES: Final = 256
RESEND_AFTER_S: Final = 0.5
MARKER_PREFIX: Final = "rm:"


def marker_key(key: str) -> str:
    """The remote-marker key of ``key`` (§5)."""
    return MARKER_PREFIX + key


@dataclass
class Batch:
    """The deletes of one round for one target."""

    target: str
    keys: list[str]
    round_id: int
    sent_at: float = 0.0
    acked: bool = False


@dataclass
class SquealCore:
    targets: Sequence[str]
    position: int = 0
    markers: bool = False
    resend_after_s: float = RESEND_AFTER_S
    round_id: int = 0
    batches: dict[str, Batch] = field(default_factory=dict)
    round_hi: int = 0
    reading: bool = False
    deletes_sent: int = 0
    batches_sent: int = 0

    def next_read(self) -> int | None:
        """``after`` for the next log read, or None while a read or round is under way."""
        if self.reading or self.batches:
            return None
        self.reading = True
        return self.position

    def read_failed(self) -> None:
        self.reading = False

    def on_entries(self, entries: Sequence[tuple[int, str, int, str | None]],
                   now: float) -> list[Batch]:
        """Start a round for ``entries`` (seq order, all after ``position``); the batches
        to send now. An empty read ends without a round."""
        self.reading = False
        fresh = [e for e in entries if e[0] > self.position]
        if not fresh:
            return []
        keys: list[str] = []
        seen: set[str] = set()
        for _, key, _, _ in fresh:
            for k in (key, marker_key(key)) if self.markers else (key,):
                if k not in seen:
                    seen.add(k)
                    keys.append(k)
        self.round_id += 1
        self.round_hi = fresh[-1][0]
        self.batches = {t: Batch(t, keys, self.round_id, now) for t in self.targets}
        self.batches_sent += len(self.batches)
        self.deletes_sent += len(keys) * len(self.batches)
        return list(self.batches.values())

    def on_ack(self, target: str, round_id: int) -> bool:
        """A target confirmed its batch. True when the round completed (``position``
        advanced: the host persists it)."""
        batch = self.batches.get(target)
        if batch is None or batch.round_id != round_id:
            return False
        batch.acked = True
        if all(b.acked for b in self.batches.values()):
            self.position = self.round_hi
            self.batches = {}
            return True
        return False

    def due(self, now: float) -> list[Batch]:
        """Unacknowledged batches to send again."""
        out = []
        for b in self.batches.values():
            if not b.acked and now - b.sent_at >= self.resend_after_s:
                b.sent_at = now
                self.batches_sent += 1
                out.append(b)
        return out
