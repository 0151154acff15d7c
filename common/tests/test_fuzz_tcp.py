"""Fuzzing the TCP endpoint and the envelope codec with hostile bytes.

DESIGN.md "Tests": every parser is fuzzed, and its invariant is "only our declared
error, never anything else". For the endpoint that means: whatever many connections
throw at it (random bytes, truncated frames, huge length prefixes, garbage msgpack,
mutated envelopes, well-framed envelopes with random bodies), it answers at most with
well-formed ``ErrorReply`` envelopes, closes only the offending connections, and still
answers a correct request correctly afterwards. Seeded and bounded (``--seeds`` /
``GIANTS_SEEDS`` run more rounds).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from giants.core.envelope import (
    Envelope,
    ErrorReply,
    FrameDecoder,
    decode_envelope,
    encode_envelope,
    frame,
)
from giants.core.errors import RemoteProtocolError
from giants.core.testing.transport_conformance import Ping, Pong, echo_server
from giants.core.transport import tcp

CONNECTIONS_PER_ROUND = 120
CONCURRENT_CONNECTIONS = 12
MAX_FRAME_BYTES = 64 * 1024
READ_DEADLINE_S = 5.0  # a real-socket wait, only reached if the server misbehaves


def _random_msgpack(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.randint(-(2**63), 2**64 - 1)
    if kind == 1:
        return rng.random()
    if kind == 2:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(12)))
    if kind == 3:
        return rng.randbytes(rng.randrange(16))
    if kind == 4:
        return rng.choice([None, True, False])
    if kind == 5:
        return msgpack.ExtType(rng.randrange(0, 4), rng.randbytes(rng.randrange(8)))
    if kind == 6:
        return [_random_msgpack(rng, depth + 1) for _ in range(rng.randrange(6))]
    if kind == 7:
        return {str(rng.randrange(5)): _random_msgpack(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    return ["conformance.ping", *(_random_msgpack(rng, depth + 1) for _ in range(rng.randrange(4)))]


def _valid_frame(rng: random.Random, msg_id: int) -> bytes:
    body = Ping(rng.randrange(100), rng.randbytes(rng.randrange(40)))
    return frame(encode_envelope(Envelope("fuzz", "s1", msg_id, None, body)))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        pos = rng.randrange(4, len(buf)) if len(buf) > 4 else 0
        buf[pos] = rng.randrange(256)
    return bytes(buf)


def _packed_envelope(rng: random.Random, msg_id: int) -> bytes:
    return frame(msgpack.packb(["fuzz", "s1", msg_id, None, _random_msgpack(rng)],
                               use_bin_type=True))


# Each generator returns the bytes one hostile connection sends.
_ATTACKS: list[Callable[[random.Random, int], bytes]] = [
    lambda rng, i: rng.randbytes(rng.randrange(1, 3000)),
    lambda rng, i: _valid_frame(rng, i)[: rng.randrange(1, 40)],
    lambda rng, i: rng.randrange(MAX_FRAME_BYTES + 1, 2**32).to_bytes(4, "big") + b"xx",
    lambda rng, i: frame(msgpack.packb(_random_msgpack(rng), use_bin_type=True)),
    lambda rng, i: _mutate(rng, _valid_frame(rng, i)),
    _packed_envelope,
    lambda rng, i: _packed_envelope(rng, i) + _valid_frame(rng, i + 1),
]


async def _attack(address: str, data: bytes) -> None:
    stream = await tcp.connect(address)
    decoder = FrameDecoder()
    try:
        try:
            await stream.send_all(data)
            await stream.send_eof()
        except trio.BrokenResourceError:
            return  # the server already hung up on us: allowed
        with trio.fail_after(READ_DEADLINE_S):
            while True:
                try:
                    chunk = await stream.receive_some()
                except trio.BrokenResourceError:
                    return
                if not chunk:
                    return
                for payload in decoder.feed(chunk):
                    env = decode_envelope(payload)  # replies are always well formed
                    assert env.source == "s1" and env.in_reply_to is not None, env
                    if isinstance(env.body, ErrorReply):
                        assert env.body.kind == "protocol"
                    else:
                        assert isinstance(env.body, Pong), env
    finally:
        await stream.aclose()


def _cases(seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for i in range(CONNECTIONS_PER_ROUND):
        yield _ATTACKS[i % len(_ATTACKS)](rng, 1000 * i)


async def test_endpoint_survives_hostile_connections(
    giants_seeds: Callable[[int], Iterator[int]],
) -> None:
    async with tcp.serve("s1", max_frame_bytes=MAX_FRAME_BYTES) as ep, \
            trio.open_nursery() as nursery, tcp.Client("good") as client:
        nursery.start_soon(echo_server, ep)
        limit = trio.CapacityLimiter(CONCURRENT_CONNECTIONS)

        async def one(data: bytes) -> None:
            async with limit:
                await _attack(ep.address, data)

        for seed in giants_seeds(2):
            async with trio.open_nursery() as attackers:
                for data in _cases(seed):
                    attackers.start_soon(one, data)
            reply = await client.request(ep.address, Ping(seed, b"still here"), timeout=5.0)
            assert reply == Pong(seed, b"still here")
        nursery.cancel_scope.cancel()


_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=10) | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_decode_envelope_random_bytes_only_declared_error(data: bytes) -> None:
    try:
        decode_envelope(data)
    except RemoteProtocolError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.lists(_msgpack_values, max_size=6), st.sampled_from(
    ["conformance.ping", "conformance.pong", "core.error", "core.stream_open", "nope"]))
def test_decode_envelope_wrong_shapes_only_declared_error(
    fields: list[Any], tag: str
) -> None:
    for raw in (fields, ["a", "b", 1, None, [tag, *fields]]):
        data = msgpack.packb(raw, use_bin_type=True)
        try:
            env = decode_envelope(data)
        except RemoteProtocolError:
            continue
        assert encode_envelope(env)  # whatever decodes, encodes again
