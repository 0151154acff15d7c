"""The web server's cache logic: demand-filled look-aside caching with leases.

Scaling Memcache at Facebook §2 (Figure 1) and the paper's refinements:

* **read** -- ``mg`` the key from the own cluster (through its router) asking for a
  lease; a hit returns; a ``wait`` (another client holds the key's lease) sleeps
  ``LEASE_RETRY_S`` and retries (§3.2.1, thundering herds); a win reads the database and
  fills with the lease token -- rejected if a delete came in between (stale sets);
* **write** -- write the database (which appends to the commit log, the daemon's
  source), then delete the key in the own cluster for read-your-writes (§4.1);
* **remote markers** (§5) -- in a replica region, a write first sets the marker
  ``rm:<key>`` in the own cluster, writes to the master, deletes locally; a miss that
  finds the marker reads the *master* database instead of the lagging replica. The
  region's daemon clears the marker once replication delivered the write;
* **cold-cluster warm-up** (§4.3) -- with ``warm`` set, a miss in this (cold) cluster is
  answered from the warm cluster and ``add``-ed here; deletes on cold servers carry a
  hold-off (``--delete-hold 2``) during which such an ``add`` fails, so a value that was
  just invalidated is not copied back.

Values are cached as ``"<version>:<value>"`` so readers (and checkers) can tell how
fresh a cached value is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import trio

from giants.memcache._simnodes import decode_value, encode_value
from giants.memcache._squeal import marker_key
from giants.memcache.client import MemcacheClient
from giants.memcache.dbnode import DbClient

__all__ = ["LookasideClient", "ReadResult", "LEASE_TTL_S"]

LEASE_TTL_S: Final = 10
LEASE_RETRY_S: Final = 0.01
LEASE_MAX_RETRIES: Final = 200
MARKER_TTL_S: Final = 30


@dataclass
class LookasideStats:
    reads: int = 0
    hits: int = 0
    db_reads: int = 0
    waits: int = 0
    fills: int = 0
    fills_rejected: int = 0
    master_reads: int = 0
    warm_hits: int = 0
    writes: int = 0


@dataclass(frozen=True)
class ReadResult:
    version: int
    value: str | None
    source: str          # "cache" | "db" | "master" | "warm"


class LookasideClient:
    """See the module docstring."""

    def __init__(self, cache: MemcacheClient, db: DbClient, *,
                 master: DbClient | None = None, use_leases: bool = True,
                 markers: bool = False, warm: MemcacheClient | None = None) -> None:
        self.cache = cache
        self.db = db
        self.master = master or db
        self.use_leases = use_leases
        self.markers = markers
        self.warm = warm
        self.stats = LookasideStats()

    async def read(self, key: str) -> ReadResult:
        self.stats.reads += 1
        k = key.encode()
        if self.warm is not None:
            return await self._read_warming(key)
        if not self.use_leases:
            cached = await self.cache.get(k)
            if cached is not None:
                return self._hit(cached)
            version, value, source = await self._read_db(key)
            await self.cache.set(k, encode_value(version, value))
            self.stats.fills += 1
            return ReadResult(version, value, source)
        for _ in range(LEASE_MAX_RETRIES):
            r = await self.cache.lease_get(k, LEASE_TTL_S)
            if r.status == "hit" and r.value is not None:
                return self._hit(r.value)
            if r.status == "wait":
                self.stats.waits += 1
                await trio.sleep(LEASE_RETRY_S)
                continue
            version, value, source = await self._read_db(key)
            if r.token:
                if await self.cache.lease_set(k, encode_value(version, value), r.token) == "HD":
                    self.stats.fills += 1
                else:
                    self.stats.fills_rejected += 1
            return ReadResult(version, value, source)
        # The lease holder never filled in time: serve from the database without filling.
        version, value, source = await self._read_db(key)
        return ReadResult(version, value, source)

    async def write(self, key: str, value: str | None) -> int:
        """Write through to the database, then invalidate locally; returns the version."""
        self.stats.writes += 1
        k = key.encode()
        if self.markers:
            await self.cache.set(marker_key(key).encode(), b"1", MARKER_TTL_S)
        written = await self.master.write(key, value)
        await self.cache.delete(k)
        return written.version

    def _hit(self, cached: bytes) -> ReadResult:
        self.stats.hits += 1
        version, value = decode_value(cached)
        return ReadResult(version, value, "cache")

    async def _read_db(self, key: str) -> tuple[int, str | None, str]:
        """The row from this region's database -- or from the master when a remote
        marker says our replica may not have our own write yet."""
        if self.markers and await self.cache.get(marker_key(key).encode()) is not None:
            self.stats.master_reads += 1
            return (*await self.master.read(key), "master")
        self.stats.db_reads += 1
        return (*await self.db.read(key), "db")

    async def _read_warming(self, key: str) -> ReadResult:
        assert self.warm is not None
        k = key.encode()
        cached = await self.cache.get(k)
        if cached is not None:
            return self._hit(cached)
        warm = await self.warm.get(k)
        if warm is not None:
            self.stats.warm_hits += 1
            await self.cache.add(k, warm)
            warm_version, warm_value = decode_value(warm)
            return ReadResult(warm_version, warm_value, "warm")
        version, value, source = await self._read_db(key)
        await self.cache.add(k, encode_value(version, value))
        return ReadResult(version, value, source)
