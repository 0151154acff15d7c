"""The transport conformance suite against the TCP transport (real loopback sockets)."""

from __future__ import annotations

import pytest
import trio

from giants.core.envelope import Envelope
from giants.core.testing.transport_conformance import (
    Order,
    Ping,
    Pong,
    RawConnection,
    TcpKit,
    TransportConformance,
    echo_server,
)
from giants.core.transport import tcp


class TestTcpTransport(TransportConformance):
    @pytest.fixture
    def kit(self) -> TcpKit:
        return TcpKit()

    @pytest.fixture
    def transport_clock(self) -> None:
        return None


async def test_a_client_that_never_reads_cannot_stall_the_server() -> None:
    """A raw client floods requests for big replies and never reads them: the server's
    writes to it block once the socket buffers are full, the watchdog closes that
    connection, and the server goes on answering everyone else."""
    async with tcp.serve("s1", write_timeout_s=0.2) as ep, trio.open_nursery() as nursery:
        nursery.start_soon(echo_server, ep)
        hog = RawConnection(await tcp.connect(ep.address))
        with trio.move_on_after(10.0):
            try:
                for n in range(200):  # 200 replies of 1 MiB: far beyond any socket buffer
                    await hog.send_envelope(Envelope("hog", "s1", n + 1, None,
                                                     Order("big", 1024 * 1024)))
            except trio.BrokenResourceError:
                pass  # the server hung up on us: that is the point
        async with tcp.Client("c1") as c:
            with trio.fail_after(10.0):
                assert await c.request(ep.address, Ping(1), timeout=5.0) == Pong(1)
        await hog.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_errors_raised_inside_the_client_block_come_out_unwrapped() -> None:
    from giants.core.errors import Timeout as _Timeout
    from giants.core.transport import tcp as _tcp

    with pytest.raises(_Timeout):
        async with _tcp.Client("unwrap-test"):
            raise _Timeout("from the body")
