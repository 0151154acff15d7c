"""The chunkserver driver's data push (GFS paper §3.2) over in-memory streams: bytes are
stored, forwarded down the chain as they arrive, and acknowledged only once the whole
chain holds them; a bad header is refused without an acknowledgement."""

from __future__ import annotations

from contextlib import asynccontextmanager

import trio
import trio.testing

from giants.gfs._chunkstore import PushBuffer
from giants.gfs._messages import PushHeader
from giants.gfs.node import ACK_OK, receive_push


class ChainForwarder:
    """Stands in for the TCP client: 'connects' to the next chunkserver's handler."""

    def __init__(self, nursery, buffers):
        self.nursery = nursery
        self.buffers = buffers
        self.opened = []

    @asynccontextmanager
    async def open_stream(self, address, header):
        self.opened.append(address)
        ours, theirs = trio.testing.memory_stream_pair()
        self.nursery.start_soon(receive_push, header, theirs, self.buffers[address], self)
        yield ours


async def test_push_is_forwarded_along_the_chain_and_acked_at_the_end():
    data = bytes(range(256)) * 4000  # ~1 MB, several forwarding pieces
    buffers = {name: PushBuffer() for name in ("cs-0", "cs-1", "cs-2")}
    async with trio.open_nursery() as nursery:
        fwd = ChainForwarder(nursery, buffers)
        client, server = trio.testing.memory_stream_pair()
        header = PushHeader("c:1", len(data), ["cs-1", "cs-2"])
        nursery.start_soon(receive_push, header, server, buffers["cs-0"], fwd)
        for i in range(0, len(data), 100_000):
            await client.send_all(data[i:i + 100_000])
        assert await client.receive_some(1) == ACK_OK
    assert fwd.opened == ["cs-1", "cs-2"]
    assert all(b.get("c:1") == data for b in buffers.values())


async def test_bad_header_is_refused_without_an_ack():
    buffer = PushBuffer(max_bytes=10)
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        fwd = ChainForwarder(nursery, {})
        await receive_push(PushHeader("x", 11, []), server, buffer, fwd)   # too big
        await receive_push({"not": "a header"}, server, buffer, fwd)
    assert len(buffer) == 0
    await server.aclose()
    assert await client.receive_some(1) == b""
