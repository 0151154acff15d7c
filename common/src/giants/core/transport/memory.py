"""The in-memory transport: the same endpoints and clients, over in-process streams.

For driver tests under trio's ``MockClock``: no sockets, no real time, but the very same
framing, codec and connection code as ``tcp`` (only the way a stream is opened differs),
so what passes here behaves the same on TCP. A ``MemoryNetwork`` is the hub a test
creates; endpoints ``serve`` on it under a name, which is their address, and clients
connect to names. Connecting to a name nobody serves fails like a refused TCP connect.

Simplified: the in-memory byte pipes have unbounded buffers, so backpressure reaches a
sender only through the receiving endpoint's bounded queue, not through the pipe.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import trio
import trio.testing

from giants.core.codec import DEFAULT_REGISTRY, MessageRegistry
from giants.core.envelope import DEFAULT_MAX_FRAME_BYTES
from giants.core.errors import LocalProtocolError
from giants.core.transport._base import WRITE_TIMEOUT_S, StreamHandler
from giants.core.transport._client import StreamClient
from giants.core.transport._endpoint import StreamEndpoint

__all__ = ["MemoryNetwork", "serve", "Client"]

_Handler = Callable[[trio.abc.Stream], Awaitable[None]]


class MemoryNetwork:
    """Names -> listening endpoints, within one trio run."""

    def __init__(self) -> None:
        self._listeners: dict[str, tuple[trio.Nursery, _Handler]] = {}

    def listening(self, name: str) -> bool:
        return name in self._listeners

    async def connect(self, name: str) -> trio.abc.Stream:
        """A stream to the endpoint serving ``name``. Raises ``ConnectionRefusedError``
        (an ``OSError``) if nobody serves it."""
        await trio.lowlevel.checkpoint()
        entry = self._listeners.get(name)
        if entry is None:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"nothing serves {name!r}")
        nursery, handler = entry
        ours, theirs = trio.testing.memory_stream_pair()
        nursery.start_soon(handler, theirs)
        return ours

    def _listen(self, name: str, nursery: trio.Nursery, handler: _Handler) -> None:
        if name in self._listeners:
            raise LocalProtocolError(f"{name!r} is already served on this network")
        self._listeners[name] = (nursery, handler)

    def _unlisten(self, name: str) -> None:
        self._listeners.pop(name, None)


@asynccontextmanager
async def serve(
    network: MemoryNetwork,
    node_id: str,
    listen: str | None = None,
    *,
    peers: Mapping[str, str] | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    stream_handler: StreamHandler | None = None,
    registry: MessageRegistry = DEFAULT_REGISTRY,
    write_timeout_s: float = WRITE_TIMEOUT_S,
) -> AsyncIterator[StreamEndpoint]:
    """Serve under the name ``listen`` (default: ``node_id``) and yield the endpoint.

    Raises ``LocalProtocolError`` if the name is already served on ``network``.
    """
    name = node_id if listen is None else listen
    async with trio.open_nursery() as nursery:
        ep = StreamEndpoint(
            node_id, name, nursery=nursery, connector=network.connect, peers=peers,
            max_frame_bytes=max_frame_bytes, stream_handler=stream_handler, registry=registry,
            write_timeout_s=write_timeout_s,
        )
        network._listen(name, nursery, ep.handle_stream)
        try:
            yield ep
        finally:
            network._unlisten(name)
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await ep.aclose()


class Client(StreamClient):
    """A client on a ``MemoryNetwork``: ``async with memory.Client(net, "c1") as c``."""

    def __init__(
        self,
        network: MemoryNetwork,
        client_id: str,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        registry: MessageRegistry = DEFAULT_REGISTRY,
    ) -> None:
        super().__init__(client_id, connector=network.connect, max_frame_bytes=max_frame_bytes,
                         registry=registry)
