"""Consistent hashing over a pool of memcached servers (ketama-style).

Scaling Memcache at Facebook §3 ("items are distributed across the memcached servers
through consistent hashing"). Each server gets ``POINTS_PER_SERVER`` points on a 32-bit
ring, four per MD5 digest of ``"<server>-<i>"`` as libketama places them; a key goes to
the first point at or after the MD5 of the key. Adding or removing one server moves only
about ``1/n`` of the keys. Pure and deterministic.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from typing import Final

__all__ = ["HashRing", "POINTS_PER_SERVER"]

# libketama's 160 points per server (40 digests x 4): enough for an even spread.
POINTS_PER_SERVER: Final = 160


def _digest(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


class HashRing:
    """Maps keys to ``servers`` (names, usually ``host:port``). Raises ``ValueError`` if
    ``servers`` is empty or has duplicates."""

    def __init__(self, servers: Sequence[str]) -> None:
        if not servers:
            raise ValueError("a hash ring needs at least one server")
        if len(set(servers)) != len(servers):
            raise ValueError(f"duplicate servers in {list(servers)}")
        self.servers = list(servers)
        points: list[tuple[int, str]] = []
        for server in self.servers:
            for i in range(POINTS_PER_SERVER // 4):
                d = _digest(f"{server}-{i}".encode())
                for j in range(4):
                    points.append((int.from_bytes(d[4 * j: 4 * j + 4], "little"), server))
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [s for _, s in points]
        self._single = self.servers[0] if len(self.servers) == 1 else None

    def lookup(self, key: bytes) -> str:
        """The server owning ``key``."""
        if self._single is not None:
            return self._single
        h = int.from_bytes(_digest(key)[:4], "little")
        i = bisect.bisect_left(self._hashes, h)
        return self._owners[i if i < len(self._owners) else 0]
