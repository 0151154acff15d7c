"""Wire messages of the storage tier and of the simulated cache tier.

Scaling Memcache at Facebook §3.1 (look-aside reads and invalidating writes) and §4
(mcsqueal tailing the database's commit log). The database (``_db``) and its replicas
speak these over the giants transport; the cache messages are what the simulator's
cache nodes (``_simnodes``) speak in place of the memcached text protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

from giants.core.codec import message

__all__ = ["DbRead", "DbValue", "DbWrite", "DbWritten", "DbRefused", "LogRead", "LogEntries",
           "CacheGet", "CacheReply", "CacheSet", "CacheSetReply", "CacheDelete",
           "CacheDeleted"]


@final
@message("memcache.db_read")
@dataclass(frozen=True, slots=True)
class DbRead:
    key: str


@final
@message("memcache.db_value")
@dataclass(frozen=True, slots=True)
class DbValue:
    key: str
    value: str | None
    version: int


@final
@message("memcache.db_write")
@dataclass(frozen=True, slots=True)
class DbWrite:
    key: str
    value: str | None    # None deletes the row


@final
@message("memcache.db_written")
@dataclass(frozen=True, slots=True)
class DbWritten:
    key: str
    version: int
    seq: int             # the commit-log position of this write


@final
@message("memcache.db_refused")
@dataclass(frozen=True, slots=True)
class DbRefused:
    reason: str


@final
@message("memcache.log_read")
@dataclass(frozen=True, slots=True)
class LogRead:
    after: int           # return entries with seq > after
    limit: int


@final
@message("memcache.log_entries")
@dataclass(frozen=True, slots=True)
class LogEntries:
    entries: list[tuple[int, str, int, str | None]]   # (seq, key, version, value)
    head: int            # the newest seq the database has


@final
@message("memcache.cache_get")
@dataclass(frozen=True, slots=True)
class CacheGet:
    key: str
    lease: bool          # ask for a lease token on a miss (mg ... N<ttl>)


@final
@message("memcache.cache_reply")
@dataclass(frozen=True, slots=True)
class CacheReply:
    key: str
    status: str          # "hit" | "miss" | "won" (lease token) | "wait" (token out)
    value: bytes | None
    token: int


@final
@message("memcache.cache_set")
@dataclass(frozen=True, slots=True)
class CacheSet:
    key: str
    value: bytes
    token: int           # 0: a plain set; else the lease token (ms ... C<token>)


@final
@message("memcache.cache_set_reply")
@dataclass(frozen=True, slots=True)
class CacheSetReply:
    key: str
    stored: bool


@final
@message("memcache.cache_delete")
@dataclass(frozen=True, slots=True)
class CacheDelete:
    keys: list[str]
    batch: int


@final
@message("memcache.cache_deleted")
@dataclass(frozen=True, slots=True)
class CacheDeleted:
    batch: int
