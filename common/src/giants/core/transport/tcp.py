"""The TCP transport: endpoints and clients over trio TCP streams on real sockets.

Addresses are ``"host:port"``; servers listen on 127.0.0.1 unless told otherwise, and
port 0 picks a free port (``ep.address`` tells which). trio sets ``TCP_NODELAY`` on its
streams, so small frames leave at once; the connection writer coalesces what queues up
behind a write in flight. Every connection, inbound and outbound, is a
``LeanSocketStream`` (``giants.core.transport.lean``): the system call first, the
scheduler only when it would block. Everything else is the shared contract
(``giants.core.transport._base``) implemented in ``_endpoint`` and ``_client``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial

import trio

from giants.core.codec import DEFAULT_REGISTRY, MessageRegistry
from giants.core.envelope import DEFAULT_MAX_FRAME_BYTES
from giants.core.transport._base import WRITE_TIMEOUT_S, StreamHandler, parse_address
from giants.core.transport._client import StreamClient
from giants.core.transport._endpoint import StreamEndpoint
from giants.core.transport.lean import LeanSocketStream

__all__ = ["serve", "Client", "connect"]


async def connect(address: str) -> trio.abc.Stream:
    """A TCP stream to ``"host:port"``. Raises ``OSError`` if nothing listens there."""
    host, port = parse_address(address)
    return LeanSocketStream(await trio.open_tcp_stream(host, port))


@asynccontextmanager
async def serve(
    node_id: str,
    listen: str = "127.0.0.1:0",
    *,
    peers: Mapping[str, str] | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    stream_handler: StreamHandler | None = None,
    registry: MessageRegistry = DEFAULT_REGISTRY,
    write_timeout_s: float = WRITE_TIMEOUT_S,
) -> AsyncIterator[StreamEndpoint]:
    """Listen on ``listen`` and yield the endpoint; on exit every connection is closed.

    Raises ``OSError`` if the address cannot be bound, ``ValueError`` if it is not
    ``"host:port"``.
    """
    host, port = parse_address(listen)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_host, bound_port = listeners[0].socket.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        ep = StreamEndpoint(
            node_id, f"{bound_host}:{bound_port}", nursery=nursery, connector=connect,
            peers=peers, max_frame_bytes=max_frame_bytes, stream_handler=stream_handler,
            registry=registry, write_timeout_s=write_timeout_s,
        )
        async def handle(stream: trio.SocketStream) -> None:
            await ep.handle_stream(LeanSocketStream(stream))

        nursery.start_soon(partial(trio.serve_listeners, handle, listeners,
                                   handler_nursery=nursery))
        try:
            yield ep
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()
                await ep.aclose()


class Client(StreamClient):
    """A TCP client: ``async with tcp.Client("c1") as c: await c.request(addr, body,
    timeout=1.0)``."""

    def __init__(
        self,
        client_id: str,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        registry: MessageRegistry = DEFAULT_REGISTRY,
    ) -> None:
        super().__init__(client_id, connector=connect, max_frame_bytes=max_frame_bytes,
                         registry=registry)
