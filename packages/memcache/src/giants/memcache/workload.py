"""A region under a web-server workload, measured: hit ratio, stale reads, latency.

Scaling Memcache at Facebook §3.3 (Gutter) and §4 (invalidation), measured the way the
paper argues them, on real processes: web clients (``LookasideClient``) in every
front-end cluster read (mostly hot keys) and write through the database; a background
task polls the invalidation daemon's published position (``squeal.POSITION_KEY``) so
every write's **staleness window** (commit -> the daemon finished its round) is
measured, and every read is checked: a read that *started after* the daemon processed a
newer write of its key, yet returned an older version, is a **stale read after
invalidation** -- the guarantee says there are none. Client errors are counted; with a
Gutter pool there must be none even while a server is dead.

Used by ``giants demo memcache`` and by the real multi-process kill test.
"""

from __future__ import annotations

import bisect
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from giants.core.transport import tcp
from giants.memcache.client import MemcacheClient
from giants.memcache.dbnode import DbClient
from giants.memcache.lookaside import LookasideClient
from giants.memcache.squeal import POSITION_KEY

__all__ = ["RegionWorkload", "WorkloadReport", "herd_experiment"]

HOT_KEYS: Final = 20
ALL_KEYS: Final = 200
HOT_FRACTION: Final = 0.8
POSITION_POLL_S: Final = 0.005


@dataclass
class _Read:
    start: float
    end: float
    key: str
    version: int
    source: str


@dataclass
class WorkloadReport:
    reads: int = 0
    writes: int = 0
    errors: list[str] = field(default_factory=list)
    stale_after_invalidation: list[str] = field(default_factory=list)
    stale_reads_any: int = 0
    staleness_ms: list[float] = field(default_factory=list)
    read_latency_ms: list[float] = field(default_factory=list)

    def pct(self, values: list[float], q: float) -> float:
        if not values:
            return 0.0
        s = sorted(values)
        return s[min(len(s) - 1, int(q * (len(s) - 1)))]

    def staleness_summary(self) -> str:
        s = self.staleness_ms
        if not s:
            return "no writes processed"
        return (f"median {statistics.median(s):.1f} ms, p99 {self.pct(s, 0.99):.1f} ms, "
                f"max {max(s):.1f} ms over {len(s)} writes")


class RegionWorkload:
    """Web clients against ``routers`` (cluster -> router address) and ``db``."""

    def __init__(self, routers: dict[str, str], db: str, *, clients_per_cluster: int = 3,
                 write_fraction: float = 0.05, seed: int = 0) -> None:
        self.routers = routers
        self.db = db
        self.clients_per_cluster = clients_per_cluster
        self.write_fraction = write_fraction
        self.rng = random.Random(seed)
        self.t0 = time.monotonic()
        self.reads: list[_Read] = []
        self.writes: dict[str, list[tuple[int, float]]] = {}   # key -> [(version, commit t)]
        self.commits: list[tuple[float, str, int]] = []          # (t, key, version)
        self.positions: list[tuple[float, int]] = [(0.0, 0)]     # (t, daemon position)
        self.seq_of: dict[tuple[str, int], int] = {}
        self.errors: list[str] = []
        self.running = True

    def now(self) -> float:
        return time.monotonic() - self.t0

    def hit_ratio(self, t_from: float, t_to: float) -> float:
        rs = [r for r in self.reads if t_from <= r.start < t_to]
        return sum(r.source == "cache" for r in rs) / len(rs) if rs else 0.0

    async def run(self, duration_s: float,
                  events: Sequence[tuple[float, Callable[[], Awaitable[None]]]] = ()) -> None:
        """Run the workload for ``duration_s``; each ``(t, fn)`` of ``events`` is awaited
        at ``t`` seconds (the fault injection)."""
        async with tcp.Client(f"workload-{id(self)}") as net, trio.open_nursery() as nursery:
            nursery.start_soon(self._poll_position)
            for cluster, router in self.routers.items():
                for i in range(self.clients_per_cluster):
                    client = LookasideClient(MemcacheClient(router), DbClient(net, self.db))
                    nursery.start_soon(self._web, f"{cluster}-{i}", client)
            start = self.now()
            for t, fn in sorted(events, key=lambda e: e[0]):
                await trio.sleep(max(0.0, start + t - self.now()))
                await fn()
            await trio.sleep(max(0.0, start + duration_s - self.now()))
            self.running = False
            await trio.sleep(0.5)  # let the daemon publish the last rounds
            nursery.cancel_scope.cancel()

    async def _web(self, name: str, client: LookasideClient) -> None:
        rng = random.Random(f"{name}:{self.rng.random()}")
        n = 0
        while self.running:
            n += 1
            hot = rng.random() < HOT_FRACTION
            key = f"user:{rng.randrange(HOT_KEYS if hot else ALL_KEYS)}"
            start = self.now()
            try:
                if rng.random() < self.write_fraction:
                    version = await client.write(key, f"{name}#{n}")
                    self.commits.append((self.now(), key, version))
                else:
                    r = await client.read(key)
                    self.reads.append(_Read(start, self.now(), key, r.version, r.source))
            except Exception as exc:  # every client-visible failure is counted, none hidden
                self.errors.append(f"{name} t={start:.3f} {key}: {exc!r}")
            await trio.sleep(0)

    async def _poll_position(self) -> None:
        clients = [MemcacheClient(a, timeout_s=0.5) for a in self.routers.values()]
        while True:
            for c in clients:
                try:
                    raw = await c.get(POSITION_KEY)
                except Exception:  # a router mid-failover: just poll again
                    raw = None
                if raw is not None and int(raw) > self.positions[-1][1]:
                    self.positions.append((self.now(), int(raw)))
            await trio.sleep(POSITION_POLL_S)

    async def log_order(self, db: DbClient) -> None:
        """Map every committed (key, version) to its log sequence number."""
        after = 0
        while True:
            entries = await db.log_after(after, 512)
            for seq, key, version, _ in entries.entries:
                self.seq_of[(key, version)] = seq
            if not entries.entries:
                return
            after = entries.entries[-1][0]

    def report(self) -> WorkloadReport:
        rep = WorkloadReport(reads=len(self.reads), writes=len(self.commits),
                             errors=list(self.errors))
        # When did the daemon first report a position covering seq s?
        processed: dict[str, list[tuple[int, float]]] = {}
        for t, key, version in self.commits:
            seq = self.seq_of.get((key, version))
            if seq is None:
                continue
            i = next((j for j, (_, p) in enumerate(self.positions) if p >= seq), None)
            if i is not None:
                done = self.positions[i][0]
                rep.staleness_ms.append(1000.0 * max(0.0, done - t))
                processed.setdefault(key, []).append((version, done))
        for key in processed:
            processed[key].sort(key=lambda vd: vd[1])
        latest: dict[str, list[tuple[float, int]]] = {}
        for t, key, version in sorted(self.commits):
            latest.setdefault(key, []).append((t, version))
        for r in self.reads:
            rep.read_latency_ms.append(1000.0 * (r.end - r.start))
            for version, done in processed.get(r.key, ()):
                if done <= r.start and r.version < version:
                    rep.stale_after_invalidation.append(
                        f"read of {r.key} at t={r.start:.3f} returned v{r.version}; "
                        f"v{version} was invalidated at t={done:.3f}")
                    break
            commits = latest.get(r.key, [])
            i = bisect.bisect_right([t for t, _ in commits], r.start)
            if i and commits[i - 1][1] > r.version:
                rep.stale_reads_any += 1
        return rep


async def herd_experiment(router: str, db_address: str, *, clients: int, use_leases: bool,
                          key: str = "herd:hot") -> tuple[int, int]:
    """§3.2.1's thundering herd: ``clients`` web servers miss on one hot key at the same
    instant. Returns (database reads, fills that landed)."""
    async with tcp.Client("herd") as net:
        db = DbClient(net, db_address)
        setup = LookasideClient(MemcacheClient(router), db)
        await setup.write(key, "hot-value")
        webs = [LookasideClient(MemcacheClient(router), DbClient(net, db_address),
                                use_leases=use_leases) for _ in range(clients)]
        go = trio.Event()

        async def one(web: LookasideClient) -> None:
            await go.wait()
            await web.read(key)

        async with trio.open_nursery() as nursery:
            for web in webs:
                nursery.start_soon(one, web)
            await trio.sleep(0.05)
            go.set()
        for web in webs:
            await web.cache.aclose()
        await setup.cache.aclose()
        return (sum(w.stats.db_reads for w in webs), sum(w.stats.fills for w in webs))
