"""Fixtures for giants-memcache tests: servers and routers in a background trio thread.

The servers run in their own trio loop on a thread so that blocking clients (pymemcache,
raw sockets) can be used from ordinary test functions, and a ``ManualClock`` drives
expiry without sleeping.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
import trio

from giants.memcache._routing import RouteTable
from giants.memcache.node import serve_memcached
from giants.memcache.router import Router, serve_router


class ManualClock:
    """Unix time that moves only when a test says so."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class TrioThread:
    """A trio loop on a background thread, hosting services the tests start and stop."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "trio thread did not start"

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await trio.sleep_forever()

    @staticmethod
    async def _scoped(fn: Callable[..., Any], *, task_status: Any) -> None:
        done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    value = await nursery.start(fn)
                    task_status.started((value, scope, done))
        finally:
            done.set()

    @staticmethod
    async def _stop(scope: trio.CancelScope, done: trio.Event) -> None:
        scope.cancel()
        await done.wait()

    def start(self, fn: Callable[..., Any]) -> tuple[Any, Callable[[], None]]:
        """Start ``fn(task_status=...)``; its started value and a function that stops it
        and returns once it has fully stopped (its port closed)."""
        value, scope, done = trio.from_thread.run(
            self._nursery.start, partial(self._scoped, fn), trio_token=self._token)
        return value, lambda: trio.from_thread.run(self._stop, scope, done,
                                                   trio_token=self._token)

    def close(self) -> None:
        trio.from_thread.run_sync(self._nursery.cancel_scope.cancel, trio_token=self._token)
        self._thread.join(10)


@pytest.fixture
def trio_thread() -> Iterator[TrioThread]:
    tt = TrioThread()
    yield tt
    tt.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def start_server(tt: TrioThread, clock: ManualClock, **kwargs: Any) -> tuple[int, Any, Callable[[], None]]:
    (port, server), stop = tt.start(partial(serve_memcached, clock=clock, **kwargs))
    return port, server, stop


@pytest.fixture(params=["epoll", "epoll-4-threads", "trio"])
def server_port(request: pytest.FixtureRequest, trio_thread: TrioThread, clock: ManualClock) -> int:
    """A memcached server (every engine configuration) with a manual clock."""
    engine, threads = ("epoll", 4) if request.param == "epoll-4-threads" else (request.param, 1)
    port, _, _ = start_server(trio_thread, clock, engine=engine, threads=threads)
    return port


@pytest.fixture
def region(trio_thread: TrioThread, clock: ManualClock) -> dict[str, Any]:
    """Two pool servers, a Gutter server and a router in front of them."""
    servers = {}
    for name in ("mc0", "mc1", "gutter"):
        port, server, stop = start_server(trio_thread, clock)
        servers[name] = (f"127.0.0.1:{port}", server, stop)
    table = RouteTable([servers["mc0"][0], servers["mc1"][0]], [servers["gutter"][0]])
    router = Router(table)
    port, _ = trio_thread.start(partial(serve_router, router))
    return {"router_port": port, "router": router, "servers": servers}


@pytest.fixture(params=["server", "router"])
def target_port(request: pytest.FixtureRequest, trio_thread: TrioThread, clock: ManualClock
                ) -> int:
    """pymemcache targets: one server, or a router over a pool (same manual clock)."""
    if request.param == "server":
        return start_server(trio_thread, clock)[0]
    return int(request.getfixturevalue("region")["router_port"])


class Raw:
    """A raw socket speaking bytes, for protocol edge cases."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_until(self, end: bytes) -> bytes:
        while end not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; have {self.buf!r}")
            self.buf += chunk
        i = self.buf.index(end) + len(end)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def line(self) -> bytes:
        return self.read_until(b"\r\n")

    def ask(self, data: bytes, end: bytes = b"\r\n") -> bytes:
        self.send(data)
        return self.read_until(end)

    def closed_by_peer(self) -> bool:
        self.sock.settimeout(5)
        return self.sock.recv(1) == b""

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw() -> Iterator[Callable[[int], Raw]]:
    opened: list[Raw] = []

    def make(port: int) -> Raw:
        r = Raw(port)
        opened.append(r)
        return r

    yield make
    for r in opened:
        r.close()


@pytest.fixture
def make_server(trio_thread: TrioThread, clock: ManualClock
                ) -> Callable[..., tuple[int, Any, Callable[[], None]]]:
    """Start another server on the shared manual clock: (port, Server, stop)."""
    return lambda **kwargs: start_server(trio_thread, clock, **kwargs)
