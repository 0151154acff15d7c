"""The memcached server process: a thin trio front-end over ``Session`` and ``Store``.

Scaling Memcache at Facebook §2/§6: one memcached server. All deciding logic is in the
sans-I/O ``Session`` (protocol) and ``Store`` (items, LRU, leases); this driver only
accepts connections on 127.0.0.1, feeds received bytes to the connection's session with
the current time, writes the replies back, and runs the LRU crawler once a second.

The per-request path is kept lean for throughput: the socket is read and written
directly (non-blocking) and trio is only asked to wait when there is nothing to read or
no room to write; one ``recv`` feeds every pipelined request, one ``send`` carries all
their replies.

A client that disconnects mid-value leaves nothing behind (the partial block dies with
its session); other connections are unaffected. Beyond ``MAX_CONNECTIONS`` a new
connection is told ``ERROR Too many open connections`` and closed, as memcached does.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import trio

from giants.core.transport.lean import LeanSocketStream
from giants.memcache._eventloop import DEFAULT_THREADS, EpollEngine
from giants.memcache._protocol import DEFAULT_ITEM_SIZE_MAX
from giants.memcache._session import Server, Session
from giants.memcache._store import Store

__all__ = ["serve_memcached", "parse_memory", "server_main", "MAX_CONNECTIONS"]

log = logging.getLogger("giants.memcache.node")

# memcached's default -c.
MAX_CONNECTIONS: Final = 1024
RECV_BYTES: Final = 256 * 1024
LISTEN_BACKLOG: Final = 1024
ENGINES: Final = ("epoll", "trio")
CRAWL_INTERVAL_S: Final = 1.0
CRAWL_BUDGET: Final = 2000


def parse_memory(text: str | int) -> int:
    """``"64m"`` / ``"1g"`` / ``"512k"`` / bytes -> bytes. A bare number is megabytes, as
    memcached's ``-m``. Raises ``ValueError``."""
    if isinstance(text, int):
        return text * 1024 * 1024
    t = text.strip().lower()
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "b": 1}
    if t and t[-1] in units:
        value = int(t[:-1]) * units[t[-1]]
    else:
        value = int(t) * 1024 * 1024
    if value <= 0:
        raise ValueError(f"memory limit must be positive: {text!r}")
    return value


async def _serve_connection(server: Server, stream: trio.SocketStream,
                            clock: Callable[[], float]) -> None:
    conn = LeanSocketStream(stream)
    server.curr_connections += 1
    server.total_connections += 1
    try:
        if server.curr_connections > MAX_CONNECTIONS:
            await conn.send_all(b"ERROR Too many open connections\r\n")
            return
        session = Session(server)
        feed = session.feed
        more = False
        while True:
            # Wait first (one scheduler pass; also our checkpoint, so a busy connection
            # cannot starve the others) unless a full buffer says more is waiting.
            data = conn.receive_nowait(RECV_BYTES) if more else await conn.receive_when_ready(RECV_BYTES)
            if data is None:
                more = False
                continue
            if not data:
                if session.parser.in_value():
                    log.info("client disconnected mid-value; partial value discarded")
                return
            out = feed(data, clock())
            while out:
                await conn.send_all(out)
                # Requests left behind the reply limit: serve them now they can go out.
                out = feed(b"", clock()) if session.backlog() else b""
            if session.closed:
                return
            more = len(data) == RECV_BYTES
    except (OSError, trio.BrokenResourceError):
        return
    finally:
        server.curr_connections -= 1
        await conn.aclose()


async def serve_memcached(
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    memory_bytes: int = 64 * 1024 * 1024,
    item_size_max: int = DEFAULT_ITEM_SIZE_MAX,
    delete_hold_s: float = 0.0,
    clock: Callable[[], float] = time.time,
    store: Store | None = None,
    engine: str = "epoll",
    threads: int = DEFAULT_THREADS,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve memcached on ``host:port`` until cancelled; ``task_status.started`` gets
    ``(port, server)``. ``clock`` is injectable so tests drive expiry without sleeping.

    ``engine="epoll"`` (default) runs the data path in ``_eventloop.EpollEngine``'s
    ``threads`` worker threads; ``engine="trio"`` serves every connection as a trio
    task (slower: see ``_eventloop``'s docstring). Both run the same ``Session``/``Store``.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if store is None:
        store = Store(memory_bytes, item_size_max=item_size_max, delete_hold_s=delete_hold_s)
        store.reseed_cas(clock())
    server = Server(store, pid=os.getpid(), started_at=clock())
    if engine == "epoll":
        await _serve_epoll(server, host, port, clock, threads, task_status)
        return
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]

    async def handler(stream: trio.SocketStream) -> None:
        await _serve_connection(server, stream, clock)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        nursery.start_soon(_crawler, store, clock)
        task_status.started((bound, server))


async def _serve_epoll(server: Server, host: str, port: int, clock: Callable[[], float],
                       threads: int, task_status: Any) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(LISTEN_BACKLOG)
        loop = EpollEngine(server, listener, clock, max_connections=MAX_CONNECTIONS,
                           crawl_interval_s=CRAWL_INTERVAL_S, crawl_budget=CRAWL_BUDGET,
                           threads=threads)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(trio.to_thread.run_sync, loop.run))
            task_status.started((listener.getsockname()[1], server))
            try:
                await trio.sleep_forever()
            finally:
                loop.stop()
    finally:
        listener.close()


async def _crawler(store: Store, clock: Callable[[], float]) -> None:
    while True:
        await trio.sleep(CRAWL_INTERVAL_S)
        store.crawl(clock(), CRAWL_BUDGET)


async def server_main(config: dict[str, Any]) -> None:
    """``Role.main`` of the ``server`` and ``gutter`` roles."""
    host, _, port = str(config["listen"]).rpartition(":")
    await serve_memcached(
        port=int(port), host=host or "127.0.0.1",
        memory_bytes=parse_memory(config.get("memory", "64m")),
        item_size_max=int(config.get("item_size_max", DEFAULT_ITEM_SIZE_MAX)),
        delete_hold_s=float(config.get("delete_hold_s", 0.0)),
        engine=str(config.get("engine", "epoll")),
        threads=int(config.get("threads", DEFAULT_THREADS)),
    )
