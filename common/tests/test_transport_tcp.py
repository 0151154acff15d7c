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


# -- two hosted nodes trading big messages both ways at once ----------------------------

from dataclasses import dataclass  # noqa: E402
from functools import partial  # noqa: E402

from giants.core.codec import message  # noqa: E402
from giants.core.host import MemoryDurableStore, run_process  # noqa: E402
from giants.core.process import Io  # noqa: E402


@message("test.tcp.volley")
@dataclass(frozen=True, slots=True)
class Volley:
    left: int
    payload: bytes


@message("test.tcp.serve_volleys")
@dataclass(frozen=True, slots=True)
class ServeVolleys:
    chains: int
    rounds: int
    size: int


class Volleyer:
    """Returns every ``Volley`` to the peer (with one fewer left) until none are left;
    ``ServeVolleys`` starts some chains; a ``Ping`` is answered with how many arrived."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.received = 0

    def start(self, io: Io) -> None:
        pass

    def tick(self, io: Io) -> None:
        pass

    def receive(self, io: Io, env: Envelope) -> None:
        body = env.body
        if isinstance(body, ServeVolleys):
            for _ in range(body.chains):
                io.send(self.peer, Volley(body.rounds, b"v" * body.size))
            io.reply(env, Pong(0))
        elif isinstance(body, Volley):
            self.received += 1
            if body.left > 0:
                io.send(self.peer, Volley(body.left - 1, body.payload))
        elif isinstance(body, Ping):
            io.reply(env, Pong(self.received))


async def test_big_messages_both_ways_do_not_deadlock_two_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each node answers every big message from the other with a big message back, both
    at once, far beyond the socket buffers: the endpoint's non-waiting writes (what the
    kernel does not take is queued for a flusher task) deliver every volley, in time.
    96 MB are in flight, more than the 64 MB a connection may queue before it drops
    messages, so the bound is raised here. (The deadlock that made writes non-waiting --
    a reader stepping the process blocked writing to a peer whose reader was blocked
    writing back -- showed in GFS's real kill test, three chunkservers cloning chunks to
    each other; that test is its regression test. This two-node shape did not hit it.)"""
    from giants.core.transport import _endpoint

    monkeypatch.setattr(_endpoint, "MAX_PENDING_WRITE_BYTES", 256 * 1024 * 1024)
    chains, rounds, size = 12, 20, 4 * 1024 * 1024
    async with tcp.serve("a") as a, tcp.serve("b") as b, trio.open_nursery() as nursery:
        a.set_peers({"b": b.address})
        b.set_peers({"a": a.address})
        for ep, peer in ((a, "b"), (b, "a")):
            await nursery.start(partial(run_process, lambda _d, p=peer: Volleyer(p),
                                        node_id=ep.node_id, endpoint=ep,
                                        store=MemoryDurableStore()))
        async with tcp.Client("c1") as c:
            async with trio.open_nursery() as starters:
                for ep in (a, b):
                    starters.start_soon(partial(c.request, ep.address,
                                                ServeVolleys(chains, rounds, size),
                                                timeout=30.0))
            expected = 2 * chains * (rounds + 1)
            with trio.fail_after(30.0):  # the watchdog would cut in after 5 s
                while True:
                    got = [(await c.request(ep.address, Ping(0), timeout=10.0)).n
                           for ep in (a, b)]
                    if sum(got) >= expected:
                        break
                    await trio.sleep(0.1)
            assert sum(got) == expected
        nursery.cancel_scope.cancel()
