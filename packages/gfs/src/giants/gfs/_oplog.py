"""The operation log and its checkpoints (GFS paper §2.6.3 "Operation Log").

"The operation log contains a historical record of critical metadata changes ... we
must store it reliably and not make changes visible to clients until metadata changes
are made persistent." ``OpLog.append`` applies a record to the in-memory ``Metadata``
and records its durable write (``io.put("oplog", seq, record)``); the host persists it
before any message of the same call leaves, and the master defers its reply until the
shadow masters hold the record too (``_master``).

"The master checkpoints its state whenever the log grows beyond a certain size so that
it can recover by loading the latest checkpoint from local disk and replaying only the
limited number of log records after that." ``maybe_checkpoint`` writes the checkpoint
and drops the log records it covers in one atomic durable batch; recovery
(``OpLog(durable)``) loads the checkpoint and replays the tail.

Simplified: the paper builds checkpoints in a separate thread so mutations are not
blocked; ours are built synchronously inside one core step (the metadata of a test or
demo cluster is small), and they are msgpack maps in SQLite rather than a B-tree image.
"""

from __future__ import annotations

from typing import Any

from giants.core.process import Durable, Io
from giants.gfs._messages import LogAppend
from giants.gfs._metadata import Metadata

__all__ = ["OpLog", "LOG_NS", "CKPT_NS"]

LOG_NS = "oplog"
# Records a shadow holds that arrived before their predecessors (the network reorders).
MAX_EARLY_RECORDS = 4096
CKPT_NS = "checkpoint"


class OpLog:
    """Metadata plus the durable log tail since the last checkpoint."""

    def __init__(self, durable: Durable) -> None:
        ckpt = durable.get(CKPT_NS, "state")
        self.md = Metadata.from_checkpoint(ckpt) if ckpt else Metadata()
        self.checkpoint_seq = self.md.applied
        self.tail: dict[int, dict[str, Any]] = {}
        self.early: dict[int, dict[str, Any]] = {}  # a shadow's out-of-order records
        self.replayed = 0
        for seq, rec in durable.items(LOG_NS):
            assert isinstance(seq, int)
            if seq > self.md.applied:
                self.md.apply(seq, rec)
                self.tail[seq] = rec
                self.replayed += 1

    @property
    def applied(self) -> int:
        return self.md.applied

    def append(self, io: Io, rec: dict[str, Any]) -> int:
        """Apply ``rec`` and make it durable; returns its sequence number."""
        seq = self.md.applied + 1
        self.md.apply(seq, rec)
        io.put(LOG_NS, seq, rec)
        self.tail[seq] = rec
        return seq

    def accept(self, io: Io, first: int, records: list[Any]) -> None:
        """A shadow's side: apply the records of a ``LogAppend`` in order, holding (up to
        ``MAX_EARLY_RECORDS``) those that arrive before their predecessors."""
        for i, rec in enumerate(records):
            seq = first + i
            if seq > self.md.applied and len(self.early) < MAX_EARLY_RECORDS:
                self.early[seq] = rec
        while self.md.applied + 1 in self.early:
            self.append(io, self.early.pop(self.md.applied + 1))
        for seq in [s for s in self.early if s <= self.md.applied]:
            del self.early[seq]

    def install(self, io: Io, checkpoint: dict[str, Any]) -> None:
        """A shadow's side: replace everything with a checkpoint from the master."""
        self.md = Metadata.from_checkpoint(checkpoint)
        io.put(CKPT_NS, "state", checkpoint)
        io.delete_range(LOG_NS, 0, None)
        self.tail.clear()
        self.checkpoint_seq = self.md.applied

    def maybe_checkpoint(self, io: Io, every: int) -> bool:
        if len(self.tail) < every:
            return False
        io.put(CKPT_NS, "state", self.md.to_checkpoint())
        io.delete_range(LOG_NS, 0, self.md.applied + 1)
        self.tail.clear()
        self.checkpoint_seq = self.md.applied
        io.trace("checkpoint", seq=self.md.applied)
        return True

    def catch_up(self, after: int, limit: int) -> LogAppend:
        """What a shadow that holds records up to ``after`` needs next: log records if
        the tail still has them, else the whole current state as a checkpoint."""
        if after >= self.checkpoint_seq:
            last = min(self.md.applied, after + limit)
            return LogAppend(after + 1, [self.tail[s] for s in range(after + 1, last + 1)],
                             None, 0)
        return LogAppend(self.md.applied + 1, [], self.md.to_checkpoint(), self.md.applied)
