"""The storage of record: a database with a commit log, and its read replicas.

Scaling Memcache at Facebook §3.1 (the database is the source of truth; web servers
read it on a cache miss and write it, then delete from the cache), §4 (mcsqueal tails the
database's commit log) and §5 (one master region holds the database masters, other
regions hold replicas fed by replication).

``DbProcess`` is a sans-I/O process (``giants.core.process``): rows (``row`` namespace:
key -> ``[version, value]``) and the commit log (``log`` namespace: seq -> ``[key,
version, value]``) are its durable state, which the real host keeps in SQLite through
SQLAlchemy (``SqlDurableStore``) -- so "writes go to the database and append to the
commit log" is one atomic durable write. Each write bumps the key's version and takes
the next log sequence number.

A **replica** (``upstream`` set) refuses writes and, every tick, pulls the master's log
after its own head (``LogRead``) and applies it in order -- replication *is* the commit
log, exactly as the paper's MySQL replication stream; the replica's own log then feeds
its region's invalidation daemon. Ordering contract: a write's row and log entry are
persisted before its ``DbWritten`` reply leaves (the host's persist-then-send).

Simplified: the log is never truncated (a real binlog is kept for days; our runs are
short), and a "row" is one string value per key.
"""

from __future__ import annotations

from typing import Any, Final

from giants.core.envelope import Envelope
from giants.core.process import Durable, Io
from giants.memcache._messages import (
    DbRead,
    DbRefused,
    DbValue,
    DbWrite,
    DbWritten,
    LogEntries,
    LogRead,
)

__all__ = ["DbProcess", "LOG_READ_MAX"]

# Entries per LogRead reply: bounds one message (and one replica apply).
LOG_READ_MAX: Final = 512
# A replica re-asks its upstream if a pull got no answer in this long (lost message).
PULL_TIMEOUT_S: Final = 0.5


class DbProcess:
    """A database node: the master (``upstream=None``) or a replica of ``upstream``."""

    def __init__(self, durable: Durable, *, upstream: str | None = None) -> None:
        self.upstream = upstream
        self.rows: dict[str, tuple[int, str | None]] = {
            str(k): (int(v[0]), v[1]) for k, v in durable.namespace("row").items()}
        self.log: dict[int, tuple[str, int, str | None]] = {
            int(k): (str(v[0]), int(v[1]), v[2]) for k, v in durable.items("log")}
        self.head = max(self.log, default=0)
        assert all(s in self.log for s in range(1, self.head + 1)), "commit log has a gap"
        self._pull_sent_at: float | None = None

    # -- the Process contract ---------------------------------------------------------

    def start(self, io: Io) -> None:
        io.trace("db_start", head=self.head, replica=self.upstream is not None)

    def tick(self, io: Io) -> None:
        if self.upstream is None:
            return
        if self._pull_sent_at is None or io.now - self._pull_sent_at > PULL_TIMEOUT_S:
            self._pull_sent_at = io.now
            io.send(self.upstream, LogRead(self.head, LOG_READ_MAX))

    def receive(self, io: Io, env: Envelope) -> None:
        body: Any = env.body
        if isinstance(body, DbRead):
            version, value = self.rows.get(body.key, (0, None))
            io.reply(env, DbValue(body.key, value, version))
        elif isinstance(body, DbWrite):
            if self.upstream is not None:
                io.reply(env, DbRefused(f"read replica of {self.upstream}: write to the master"))
                return
            io.reply(env, self._write(io, body.key, body.value))
        elif isinstance(body, LogRead):
            last = min(self.head, body.after + max(1, min(body.limit, LOG_READ_MAX)))
            entries = [(s, *self.log[s]) for s in range(body.after + 1, last + 1)]
            io.reply(env, LogEntries(entries, self.head))
        elif isinstance(body, LogEntries) and env.source == self.upstream:
            self._replicate(io, body)

    # -- writes and replication ---------------------------------------------------------

    def _write(self, io: Io, key: str, value: str | None) -> DbWritten:
        version = self.rows.get(key, (0, None))[0] + 1
        seq = self.head + 1
        self._apply(io, seq, key, version, value)
        io.trace("db_commit", key=key, version=version, seq=seq)
        return DbWritten(key, version, seq)

    def _apply(self, io: Io, seq: int, key: str, version: int, value: str | None) -> None:
        assert seq == self.head + 1, f"log apply out of order: {seq} after {self.head}"
        self.rows[key] = (version, value)
        self.log[seq] = (key, version, value)
        self.head = seq
        io.put("row", key, [version, value])
        io.put("log", seq, [key, version, value])

    def _replicate(self, io: Io, body: LogEntries) -> None:
        upstream = self.upstream
        assert upstream is not None
        self._pull_sent_at = None
        for seq, key, version, value in body.entries:
            if seq == self.head + 1:
                self._apply(io, seq, key, version, value)
        if body.head > self.head:
            # More is waiting upstream: ask again now instead of at the next tick.
            self._pull_sent_at = io.now
            io.send(upstream, LogRead(self.head, LOG_READ_MAX))
