"""The cache tier as simulator processes: memcached servers, mcsqueal, web servers.

Scaling Memcache at Facebook §3.2.1 (leases against stale sets and thundering herds) and
§4.1 (invalidation from the commit log), run in giants' deterministic simulator on the
*same* sans-I/O pieces the real processes use: ``CacheNode`` hosts a real ``Store`` and
takes leases exactly as the meta protocol does (``mg N`` -> ``Store.vivify``; ``ms C`` ->
token check); ``SquealNode`` hosts ``SquealCore`` against a ``DbProcess``; ``WebNode``
is the look-aside web server: read = cache get (with a lease on a miss), on a miss read
the database and fill the cache with the lease token; write = database write, then
delete in its own cluster.

``WebNode(use_leases=False)`` fills with a plain set instead: the paper's stale-set race
(a fill computed before a write lands after that write's invalidation) then really
happens, and the simulation checker sees a stale value persist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from giants.core.envelope import Envelope
from giants.core.process import Durable, Io
from giants.memcache._hashring import HashRing
from giants.memcache._messages import (
    CacheDelete,
    CacheDeleted,
    CacheGet,
    CacheReply,
    CacheSet,
    CacheSetReply,
    DbRead,
    DbValue,
    DbWrite,
    DbWritten,
    LogEntries,
    LogRead,
)
from giants.memcache._squeal import ROUND_MAX_ENTRIES, SquealCore
from giants.memcache._store import Store

__all__ = ["CacheNode", "SquealNode", "WebNode", "encode_value", "decode_value",
           "LEASE_TTL_S"]

# The paper: at most one lease token per key every 10 s.
LEASE_TTL_S: Final = 10
# A web server told to wait retries after this long (the paper's "wait briefly").
LEASE_RETRY_S: Final = 0.02
# ... at most this often, then reads the database without filling.
LEASE_MAX_RETRIES: Final = 50
# A request with no answer in this long is abandoned (message lost).
REQUEST_TIMEOUT_S: Final = 1.0


def encode_value(version: int, value: str | None) -> bytes:
    """A cached row: its version and value, so checkers can tell stale from fresh."""
    return f"{version}:{'' if value is None else value}".encode()


def decode_value(data: bytes) -> tuple[int, str]:
    version, _, value = data.decode().partition(":")
    return int(version), value


class CacheNode:
    """A memcached server in the simulator. Volatile: a crash empties it."""

    def __init__(self, durable: Durable, *, memory_bytes: int = 8 * 1024 * 1024) -> None:
        self.store = Store(memory_bytes)

    def start(self, io: Io) -> None:
        # A restarted server must never hand out a lease token it handed out before.
        self.store.reseed_cas(io.now)

    def tick(self, io: Io) -> None:
        self.store.crawl(io.now, 100)

    def receive(self, io: Io, env: Envelope) -> None:
        body: Any = env.body
        store, now = self.store, io.now
        if isinstance(body, CacheGet):
            it = store.get(body.key.encode(), now)
            if it is not None and not it.vivified:
                io.reply(env, CacheReply(body.key, "hit", it.value, 0))
            elif it is not None:
                store.stats.lease_waits += 1
                io.reply(env, CacheReply(body.key, "wait", None, 0))
            elif body.lease:
                token = store.vivify(body.key.encode(), LEASE_TTL_S, now).cas
                io.reply(env, CacheReply(body.key, "won", None, token))
            else:
                io.reply(env, CacheReply(body.key, "miss", None, 0))
        elif isinstance(body, CacheSet):
            key = body.key.encode()
            if body.token:
                cur = store.peek(key, now)
                ok = cur is not None and cur.cas == body.token
                if not ok:
                    store.stats.lease_rejected += 1
                    io.probe("memcache.stale_set_rejected")
            else:
                ok = True
            if ok:
                store.link(key, body.value, 0, 0.0, now)
            io.reply(env, CacheSetReply(body.key, ok))
        elif isinstance(body, CacheDelete):
            for k in body.keys:
                store.delete(k.encode(), now)
            io.reply(env, CacheDeleted(body.batch))


class SquealNode:
    """mcsqueal in the simulator: tails ``db``'s log, deletes on every cache node."""

    def __init__(self, durable: Durable, *, db: str, targets: list[str],
                 markers: bool = False) -> None:
        self.db = db
        self.core = SquealCore(targets, int(durable.get("squeal", "position", 0)),
                               markers=markers)
        self._read_at = 0.0
        self.processed_at: dict[int, float] = {}   # seq -> when its round completed

    def start(self, io: Io) -> None:
        pass

    def tick(self, io: Io) -> None:
        core = self.core
        if core.reading and io.now - self._read_at > REQUEST_TIMEOUT_S:
            core.read_failed()
        after = core.next_read()
        if after is not None:
            self._read_at = io.now
            io.send(self.db, LogRead(after, ROUND_MAX_ENTRIES))
        for batch in core.due(io.now):
            io.send(batch.target, CacheDelete(batch.keys, batch.round_id))

    def receive(self, io: Io, env: Envelope) -> None:
        body: Any = env.body
        core = self.core
        if isinstance(body, LogEntries) and core.reading:
            for batch in core.on_entries(body.entries, io.now):
                io.send(batch.target, CacheDelete(batch.keys, batch.round_id))
        elif isinstance(body, CacheDeleted):
            lo = core.position
            if core.on_ack(env.source, body.batch):
                io.put("squeal", "position", core.position)
                for seq in range(lo + 1, core.position + 1):
                    self.processed_at[seq] = io.now
                io.trace("squeal_round", position=core.position)


@dataclass
class _Pending:
    op: str                  # "read" | "write"
    key: str
    started: float
    value: str | None = None
    token: int = 0
    retries: int = 0
    read_version: int = -1
    expect: int = 0          # the msg id whose reply we wait for (others are stale)
    retry_at: float | None = None


@dataclass
class WebStats:
    reads: int = 0
    hits: int = 0
    db_reads: int = 0
    fills: int = 0
    fills_rejected: int = 0
    waits: int = 0
    writes: int = 0
    results: list[tuple[float, str, int]] = field(default_factory=list)  # (t, key, version)


class WebNode:
    """A look-aside web server: one operation at a time, driven by ``sim.invoke``."""

    def __init__(self, durable: Durable, *, caches: list[str], db: str,
                 write_db: str | None = None, use_leases: bool = True) -> None:
        self.ring = HashRing(caches)
        self.db = db
        self.write_db = write_db or db
        self.use_leases = use_leases
        self.pending: _Pending | None = None
        self.stats = WebStats()

    def start(self, io: Io) -> None:
        pass

    def tick(self, io: Io) -> None:
        p = self.pending
        if p is None:
            return
        if p.retry_at is not None and io.now >= p.retry_at:
            p.retry_at = None
            p.started = io.now
            p.expect = io.send(self._cache(p.key), CacheGet(p.key, self.use_leases))
        elif p.retry_at is None and io.now - p.started > REQUEST_TIMEOUT_S:
            self.pending = None  # a message was lost: give up on this operation

    def _cache(self, key: str) -> str:
        return self.ring.lookup(key.encode())

    def busy(self) -> bool:
        return self.pending is not None

    def read(self, io: Io, key: str) -> None:
        assert self.pending is None
        p = self.pending = _Pending("read", key, io.now)
        self.stats.reads += 1
        p.expect = io.send(self._cache(key), CacheGet(key, self.use_leases))

    def write(self, io: Io, key: str, value: str) -> None:
        assert self.pending is None
        p = self.pending = _Pending("write", key, io.now, value)
        self.stats.writes += 1
        p.expect = io.send(self.write_db, DbWrite(key, value))

    def receive(self, io: Io, env: Envelope) -> None:
        p = self.pending
        body: Any = env.body
        if p is None or env.in_reply_to != p.expect:
            return  # a late or duplicated reply to an earlier request
        if isinstance(body, CacheReply) and p.op == "read" and body.key == p.key:
            self._on_cache(io, p, body)
        elif isinstance(body, DbValue) and p.op == "read" and body.key == p.key:
            self.stats.db_reads += 1
            p.read_version = body.version
            if p.token or not self.use_leases:
                p.expect = io.send(self._cache(p.key), CacheSet(
                    p.key, encode_value(body.version, body.value), p.token))
            else:
                self._done(io, body.version)
        elif isinstance(body, CacheSetReply) and p.op == "read" and body.key == p.key:
            if body.stored:
                self.stats.fills += 1
            else:
                self.stats.fills_rejected += 1
            self._done(io, p.read_version)
        elif isinstance(body, DbWritten) and p.op == "write" and body.key == p.key:
            # Delete in our own cluster for read-your-writes; mcsqueal covers the rest.
            io.send(self._cache(p.key), CacheDelete([p.key], 0))
            self.pending = None

    def _on_cache(self, io: Io, p: _Pending, body: CacheReply) -> None:
        if body.status == "hit":
            assert body.value is not None
            self.stats.hits += 1
            self._done(io, decode_value(body.value)[0])
        elif body.status == "wait" and p.retries < LEASE_MAX_RETRIES:
            self.stats.waits += 1
            p.retries += 1
            # Wait briefly, then retry (from tick: the host's ticks are our timer).
            p.retry_at = io.now + LEASE_RETRY_S
        else:
            p.token = body.token if body.status == "won" else 0
            p.expect = io.send(self.db, DbRead(p.key))

    def _done(self, io: Io, version: int) -> None:
        p = self.pending
        assert p is not None
        self.stats.results.append((io.now, p.key, version))
        self.pending = None
