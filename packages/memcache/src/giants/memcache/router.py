"""The router process (mcrouter's role): the memcached protocol in, routed to pools.

Scaling Memcache at Facebook §3.1-§3.3. Clients connect to the router as if it were one
memcached server. For every request the router decides (``_routing``) which servers it
concerns -- one shard of the main pool, every replica of a replicated pool, the Gutter
server when the shard is down -- forwards it and answers in request order:

* **multi-gets are split by server and sent in parallel** (one ``get k1 k2 ...`` batch
  per server), the replies merged back in key order (§3.1 "parallel requests and
  batching");
* **deletes and sets of replicated keys go to every replica** (§3.2.3);
* **a server that fails** (connection refused, reset, or no reply in
  ``BACKEND_TIMEOUT_S``) is marked down and the request retried on **Gutter** (§3.3);
  the client sees a normal reply, never an error, while Gutter answers;
* ``flush_all`` is broadcast; ``stats`` reports the router's own counters.

Each client connection gets its own backend connections (``client.MemcacheClient``), so replies
never interleave; a request's bytes are re-encoded from the parsed ``Request``.
Simplified against mcrouter: no connection coalescing across clients, no prefix-routing
language; pools are given as lists of ``host:port``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from giants.core.transport.lean import LeanSocketStream
from giants.memcache._protocol import KEY_MAX_BYTES, Request, RequestParser
from giants.memcache._replies import BLOCKS, LINE, reply_kind, split_values
from giants.memcache._routing import Health, RouteTable, cap_ttl, quiet_reply, strip_quiet
from giants.memcache._session import VERSION
from giants.memcache.client import MemcacheClient, MemcacheError

__all__ = ["Router", "serve_router", "router_main", "BackendError"]

log = logging.getLogger("giants.memcache.router")

BACKEND_TIMEOUT_S: Final = 1.0
RECV_BYTES: Final = 256 * 1024
UNAVAILABLE: Final = b"SERVER_ERROR backend unavailable\r\n"

_RETRIEVE: Final = frozenset({b"get", b"gets", b"gat", b"gats"})
_WRITES: Final = frozenset({b"set", b"add", b"replace", b"append", b"prepend", b"cas",
                            b"delete", b"incr", b"decr", b"touch", b"ms", b"md", b"ma"})
_READS: Final = frozenset({b"mg", b"me"})


class BackendError(Exception):
    """A backend did not answer (refused, reset, timed out, or sent garbage)."""


@dataclass
class RouterStats:
    requests: int = 0
    forwards: int = 0
    failovers: int = 0
    gutter_requests: int = 0
    unavailable: int = 0
    multiget_batches: int = 0


@dataclass
class Router:
    """The router's shared state: where keys go, who is down, counters."""

    table: RouteTable
    health: Health = field(default_factory=Health)
    clock: Callable[[], float] = time.monotonic
    stats: RouterStats = field(default_factory=RouterStats)
    curr_connections: int = 0

    def stats_reply(self) -> bytes:
        lines = [("version", f"{VERSION}-router"), ("curr_connections", self.curr_connections),
                 ("servers", len(self.table.all_servers())),
                 ("servers_down", len(self.health.down(self.clock())))]
        lines += list(vars(self.stats).items())
        return b"".join(b"STAT %b %b\r\n" % (k.encode(), str(v).encode())
                        for k, v in lines) + b"END\r\n"


class _ClientSession:
    """One client connection: its backend links and the request handlers."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.links: dict[str, MemcacheClient] = {}
        self.closed = False

    async def aclose(self) -> None:
        for link in self.links.values():
            await link.aclose()

    async def _send(self, server: str, data: bytes, kind: int) -> bytes:
        """One request to one backend over this session's link to it (a link is locked
        per request: two failed-over batches may reach the same Gutter server at once).
        Raises ``BackendError``."""
        link = self.links.get(server)
        if link is None:
            link = self.links[server] = MemcacheClient(server, timeout_s=BACKEND_TIMEOUT_S)
        self.router.stats.forwards += 1
        try:
            return (await link.call(data, [kind]))[0]
        except MemcacheError as exc:
            raise BackendError(str(exc)) from exc

    async def primary(self, server: str, req: Request, kind: int) -> bytes | None:
        """``req`` to ``server``; None if it is down or just failed (marked down)."""
        router = self.router
        if not router.health.usable(server, router.clock()):
            return None
        try:
            reply = await self._send(server, req.encode(), kind)
        except BackendError as exc:
            log.warning("backend failed, failing over to gutter: %s", exc)
            router.health.failed(server, router.clock())
            return None
        router.health.succeeded(server)
        return reply

    async def gutter(self, key: bytes, req: Request, kind: int) -> bytes:
        """``req`` to the Gutter server of ``key`` (sets capped to the Gutter TTL)."""
        router = self.router
        router.stats.failovers += 1
        gutter = router.table.gutter_for(key)
        if gutter is None:
            router.stats.unavailable += 1
            return UNAVAILABLE
        router.stats.gutter_requests += 1
        try:
            return await self._send(gutter, cap_ttl(req).encode(), kind)
        except BackendError as exc:
            log.warning("gutter failed too: %s", exc)
            router.stats.unavailable += 1
            return UNAVAILABLE

    async def forward(self, server: str, req: Request, kind: int) -> bytes:
        """``req`` to ``server``, or to its key's Gutter server if ``server`` is down."""
        reply = await self.primary(server, req, kind)
        if reply is not None:
            return reply
        return await self.gutter(req.args[0], req, kind)

    async def handle(self, req: Request) -> bytes | None:
        router = self.router
        router.stats.requests += 1
        if req.error is not None:
            self.closed = req.close
            return req.error
        name = req.name
        if name in _RETRIEVE:
            return await self._retrieve(req)
        if name in _WRITES or name in _READS:
            if not req.args:
                return b"ERROR\r\n"
            if len(req.args[0]) > KEY_MAX_BYTES:
                return b"CLIENT_ERROR bad command line format\r\n"
            sent, quiet = strip_quiet(req)
            kind = reply_kind(name)
            if name in _READS:
                reply = await self.forward(router.table.read_target(req.args[0]), sent, kind)
            else:
                targets = router.table.write_targets(req.args[0])
                replies = await self._fan_out(targets, sent, kind)
                reply = replies[0]
            if quiet and quiet_reply(req, reply):
                return None
            return reply
        return await self._admin(req)

    async def _fan_out(self, targets: Sequence[str], req: Request, kind: int) -> list[bytes]:
        if len(targets) == 1:
            return [await self.forward(targets[0], req, kind)]
        replies: list[bytes] = [b""] * len(targets)

        async def one(i: int, server: str) -> None:
            # Each replica gets its own link from this session; links are not shared
            # between concurrent tasks because each target is a different server.
            replies[i] = await self.forward(server, req, kind)

        async with trio.open_nursery() as nursery:
            for i, server in enumerate(targets):
                nursery.start_soon(one, i, server)
        return replies

    async def _retrieve(self, req: Request) -> bytes:
        name = req.name
        touch = name in (b"gat", b"gats")
        keys = req.args[1:] if touch else req.args
        if not keys:
            return b"ERROR\r\n"
        if any(len(k) > KEY_MAX_BYTES for k in keys):
            return b"CLIENT_ERROR bad command line format\r\n"
        prefix = [req.args[0]] if touch else []
        groups: dict[str, list[bytes]] = {}
        for key in keys:
            groups.setdefault(self.router.table.read_target(key), []).append(key)
        self.router.stats.multiget_batches += len(groups)
        found: dict[bytes, bytes] = {}
        errors: list[bytes] = []

        def collect(reply: bytes) -> None:
            if reply.endswith(b"END\r\n"):
                found.update(split_values(reply))
            else:
                errors.append(reply)

        async def batch(server: str, group: list[bytes]) -> None:
            reply = await self.primary(server, Request(name, [*prefix, *group]), BLOCKS)
            if reply is not None:
                collect(reply)
                return
            # The shard is down: each key goes to its own Gutter server.
            by_gutter: dict[str | None, list[bytes]] = {}
            for key in group:
                by_gutter.setdefault(self.router.table.gutter_for(key), []).append(key)
            for sub in by_gutter.values():
                collect(await self.gutter(sub[0], Request(name, [*prefix, *sub]), BLOCKS))

        if len(groups) == 1:
            [(server, group)] = groups.items()
            await batch(server, group)
        else:
            async with trio.open_nursery() as nursery:
                for server, group in groups.items():
                    nursery.start_soon(batch, server, group)
        if errors:
            return errors[0]
        return b"".join(found[k] for k in keys if k in found) + b"END\r\n"

    async def _admin(self, req: Request) -> bytes | None:
        name = req.name
        router = self.router
        if name == b"flush_all":
            sent, quiet = strip_quiet(req)
            replies = await self._fan_out(router.table.all_servers(), sent, LINE)
            bad = [r for r in replies if r != b"OK\r\n"]
            return None if quiet else (bad[0] if bad else b"OK\r\n")
        if name == b"stats":
            return router.stats_reply() if not req.args else b"END\r\n"
        if name == b"version":
            return b"VERSION %b\r\n" % VERSION.encode()
        if name in (b"verbosity", b"cache_memlimit"):
            return None if req.noreply else b"OK\r\n"
        if name == b"mn":
            return b"MN\r\n"
        if name == b"quit":
            self.closed = True
            return None
        return b"ERROR\r\n"


async def _serve_client(router: Router, stream: trio.SocketStream) -> None:
    router.curr_connections += 1
    session = _ClientSession(router)
    parser = RequestParser()
    conn = LeanSocketStream(stream)
    try:
        while not session.closed:
            data = await conn.receive_when_ready(RECV_BYTES)
            if not data:
                return
            parser.feed(data)
            out: list[bytes] = []
            while not session.closed:
                req = parser.next()
                if req is None:
                    break
                reply = await session.handle(req)
                if reply is not None:
                    out.append(reply)
            if out:
                await conn.send_all(b"".join(out))
    except (OSError, trio.BrokenResourceError):
        return
    finally:
        router.curr_connections -= 1
        await session.aclose()
        await conn.aclose()


async def serve_router(router: Router, *, port: int = 0, host: str = "127.0.0.1",
                       task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the router on ``host:port`` until cancelled; ``task_status.started`` gets the
    bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_client(router, stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        task_status.started(bound)


def router_from_config(config: dict[str, Any]) -> Router:
    table = RouteTable(list(config["pool"]), list(config.get("gutter", [])),
                       dict(config.get("replicated", {})))
    return Router(table)


async def router_main(config: dict[str, Any]) -> None:
    """``Role.main`` of the ``router`` role: ``listen``, ``pool``, ``gutter``,
    ``replicated`` (prefix -> servers)."""
    host, _, port = str(config["listen"]).rpartition(":")
    await serve_router(router_from_config(config), port=int(port), host=host or "127.0.0.1")
