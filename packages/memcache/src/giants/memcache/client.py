"""A small trio memcached client: text commands, meta leases, pipelined delete batches.

Used by the web-server demo client (``lookaside``), the invalidation daemon (``squeal``)
and the tests; any memcached client (pymemcache, a meta client) works against our
servers and router too. One connection, one request at a time (a lock), reconnecting
after a failure; every call raises ``MemcacheError`` (connection failure, timeout, or an
error reply) with the connection dropped so the next call starts clean.

Leases (Scaling Memcache at Facebook §3.2.1) through the meta protocol::

    r = await c.lease_get(b"k", ttl_s=10)   # r.status: "hit" | "won" | "wait"
    if r.status == "won":
        value = compute()
        await c.lease_set(b"k", value, r.token)   # "HD" stored, "NF"/"EX" stale: dropped
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import trio

from giants.core.transport.lean import LeanSocketStream
from giants.memcache._replies import BLOCKS, LINE, META, reply_length, split_values

__all__ = ["MemcacheClient", "MemcacheError", "LeaseResult"]

DEFAULT_TIMEOUT_S: Final = 2.0
RECV_BYTES: Final = 256 * 1024
# Bound on one reply (a multi-get of many 1 MB values): a larger one is refused.
MAX_REPLY_BYTES: Final = 64 * 1024 * 1024


class MemcacheError(Exception):
    """The server did not answer, or answered with an error line."""


@dataclass(frozen=True)
class LeaseResult:
    status: str          # "hit" | "won" | "wait"
    value: bytes | None  # the value on a hit (or the stale value with "won"/"wait")
    token: int           # the lease token on "won"
    stale: bool = False


class MemcacheClient:
    """See the module docstring. ``address`` is ``host:port``."""

    def __init__(self, address: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.address = address
        host, _, port = address.rpartition(":")
        self._host, self._port = host, int(port)
        self.timeout_s = timeout_s
        self._conn: LeanSocketStream | None = None
        self._buf = bytearray()
        self._lock = trio.Lock()

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.aclose()

    async def __aenter__(self) -> MemcacheClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, request: bytes, kinds: list[int]) -> list[bytes]:
        """Send ``request`` (one or more pipelined commands) and read one reply per entry
        of ``kinds``. Raises ``MemcacheError``."""
        try:
            self._lock.acquire_nowait()   # the common case: no scheduler pass
        except trio.WouldBlock:
            await self._lock.acquire()
        try:
            with trio.fail_after(self.timeout_s):
                return await self._call(request, kinds)
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, ValueError,
                IndexError) as exc:
            await self.aclose()
            raise MemcacheError(f"{self.address}: {exc!r}") from exc
        finally:
            self._lock.release()

    async def _call(self, request: bytes, kinds: list[int]) -> list[bytes]:
        if self._conn is None:
            self._conn = LeanSocketStream(await trio.open_tcp_stream(self._host, self._port))
            self._buf.clear()
        conn = self._conn
        await conn.send_all(request)
        out = []
        for kind in kinds:
            while (n := reply_length(self._buf, kind)) < 0:
                if len(self._buf) > MAX_REPLY_BYTES:
                    raise ValueError(f"reply over {MAX_REPLY_BYTES} bytes")
                chunk = await conn.receive_when_ready(RECV_BYTES)
                if not chunk:
                    raise OSError("connection closed by server")
                self._buf += chunk
            out.append(bytes(self._buf[:n]))
            del self._buf[:n]
        return out

    async def _one(self, request: bytes, kind: int) -> bytes:
        reply = (await self.call(request, [kind]))[0]
        if reply.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
            raise MemcacheError(f"{self.address}: {reply.decode(errors='replace').strip()}")
        return reply

    # -- text commands ----------------------------------------------------------------

    async def get(self, key: bytes) -> bytes | None:
        return (await self.get_many([key])).get(key)

    async def get_many(self, keys: list[bytes]) -> dict[bytes, bytes]:
        reply = await self._one(b"get " + b" ".join(keys) + b"\r\n", BLOCKS)
        out = {}
        for key, block in split_values(reply).items():
            out[key] = block[block.index(b"\n") + 1: -2]
        return out

    async def set(self, key: bytes, value: bytes, exptime: int = 0, *, mode: bytes = b"set"
                  ) -> bool:
        req = b"%b %b 0 %d %d\r\n%b\r\n" % (mode, key, exptime, len(value), value)
        return await self._one(req, LINE) == b"STORED\r\n"

    async def add(self, key: bytes, value: bytes, exptime: int = 0) -> bool:
        return await self.set(key, value, exptime, mode=b"add")

    async def delete(self, key: bytes) -> bool:
        return await self._one(b"delete %b\r\n" % key, LINE) == b"DELETED\r\n"

    async def delete_many(self, keys: list[bytes]) -> list[bytes]:
        """Pipelined deletes in one write (one packet for many keys: mcsqueal's batching).
        Returns the replies; raises ``MemcacheError`` if any is an error."""
        replies = await self.call(b"".join(b"delete %b\r\n" % k for k in keys), [LINE] * len(keys))
        bad = [r for r in replies if r not in (b"DELETED\r\n", b"NOT_FOUND\r\n")]
        if bad:
            raise MemcacheError(f"{self.address}: {bad[0].decode(errors='replace').strip()}")
        return replies

    async def stats(self) -> dict[str, str]:
        reply = await self._one(b"stats\r\n", BLOCKS)
        out = {}
        for line in reply.decode().splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == "STAT":
                out[parts[1]] = parts[2]
        return out

    # -- leases (meta) ----------------------------------------------------------------

    async def lease_get(self, key: bytes, ttl_s: int = 10) -> LeaseResult:
        reply = await self._one(b"mg %b v c N%d\r\n" % (key, ttl_s), META)
        head, _, rest = reply.partition(b"\r\n")
        tokens = head.split()
        if tokens[0] == b"EN":
            # A server without vivify support would say this; treat as winning no token.
            return LeaseResult("won", None, 0)
        flags = tokens[2:] if tokens[0] == b"VA" else tokens[1:]
        value = rest[: int(tokens[1])] if tokens[0] == b"VA" else None
        cas = next((int(f[1:]) for f in flags if f.startswith(b"c")), 0)
        stale = b"X" in flags
        if b"W" in flags:
            return LeaseResult("won", value if stale else None, cas, stale)
        if b"Z" in flags:
            return LeaseResult("wait", value if stale else None, 0, stale)
        return LeaseResult("hit", value, cas, stale)

    async def lease_set(self, key: bytes, value: bytes, token: int, exptime: int = 0) -> str:
        """Fill with the lease token: ``"HD"`` stored; ``"NF"``/``"EX"`` the lease was
        invalidated (a delete came after our miss) and the value was dropped."""
        req = b"ms %b %d C%d T%d\r\n%b\r\n" % (key, len(value), token, exptime, value)
        return (await self._one(req, META)).split()[0].decode()

    async def invalidate(self, key: bytes, stale_ttl_s: int = 30) -> bool:
        """``md I``: mark stale instead of deleting (§3.2.1 stale values)."""
        reply = await self._one(b"md %b I T%d\r\n" % (key, stale_ttl_s), META)
        return reply.startswith(b"HD")
