"""Codec, envelopes and the framer: round trips, validation of every field type, and the
one error class (RemoteProtocolError) for anything a peer can send wrong."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from giants.core.codec import DEFAULT_REGISTRY, MessageRegistry, decode, encode, message
from giants.core.envelope import (
    Envelope,
    ErrorReply,
    FrameDecoder,
    decode_envelope,
    encode_envelope,
    frame,
)
from giants.core.errors import (
    FrameTooLarge,
    LocalProtocolError,
    NotLeader,
    RemoteProtocolError,
    UnknownMessage,
)


@message("test.codec.inner")
@dataclass(frozen=True, slots=True)
class Inner:
    n: int
    tag: str | None


@message("test.codec.outer")
@dataclass(frozen=True, slots=True)
class Outer:
    term: int
    ratio: float
    name: str
    blob: bytes
    flag: bool
    items: list[Inner]
    pair: tuple[int, str]
    many: tuple[int, ...]
    table: dict[str, int]
    maybe: Inner | None
    anything: Any


def _outer(**over: Any) -> Outer:
    base = dict(term=3, ratio=0.5, name="n", blob=b"\x00\xff", flag=True,
                items=[Inner(1, None), Inner(2, "x")], pair=(1, "a"), many=(1, 2, 3),
                table={"a": 1}, maybe=Inner(9, "z"), anything={"k": [1, b"b"]})
    base.update(over)
    return Outer(**base)


def test_round_trip_keeps_types() -> None:
    msg = _outer()
    back = decode(encode(msg))
    assert back == msg
    assert isinstance(back.pair, tuple) and isinstance(back.many, tuple)
    assert isinstance(back.items, list) and isinstance(back.items[0], Inner)


@pytest.mark.parametrize("field,bad", [
    ("term", "3"), ("term", 1.5), ("term", True), ("name", 7), ("blob", "text"),
    ("flag", 1), ("items", [1]), ("pair", [1, 2]), ("pair", [1]), ("many", [1, "x"]),
    ("table", {"a": "b"}), ("table", [1]), ("maybe", 5),
])
def test_wrong_field_types_are_remote_protocol_errors(field: str, bad: Any) -> None:
    wire = DEFAULT_REGISTRY.to_wire(_outer())
    index = 1 + [f for f in Outer.__dataclass_fields__].index(field)
    wire[index] = bad
    with pytest.raises(RemoteProtocolError):
        DEFAULT_REGISTRY.from_wire(wire)


def test_unknown_tag_wrong_arity_and_garbage() -> None:
    with pytest.raises(UnknownMessage):
        decode(msgpack.packb(["no.such.tag", 1]))
    with pytest.raises(RemoteProtocolError):
        decode(msgpack.packb(["test.codec.inner", 1]))
    for junk in (b"", b"\xc1", msgpack.packb(5), msgpack.packb([]), msgpack.packb([1, 2])):
        with pytest.raises(RemoteProtocolError):
            decode(junk)


def test_unencodable_and_duplicate_registration_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Inner(object(), None))  # type: ignore[arg-type]
    reg = MessageRegistry()
    reg.register("x", Inner)
    with pytest.raises(LocalProtocolError):
        reg.register("x", Outer)


def test_envelope_round_trip_and_error_reply() -> None:
    env = Envelope("a", "b", 7, 3, ErrorReply.definite(NotLeader(hint="n2")))
    back = decode_envelope(encode_envelope(env))
    assert back == env
    exc = back.body.exception()
    assert isinstance(exc, NotLeader) and exc.hint == "n2"
    with pytest.raises(RemoteProtocolError):
        decode_envelope(msgpack.packb(["a", "b", "seven", None, ["core.error", "x", {}]]))


def test_framer_splits_joins_and_limits() -> None:
    payloads = [b"", b"a", b"x" * 1000, b"yz"]
    stream = b"".join(frame(p) for p in payloads)
    dec = FrameDecoder(max_frame_bytes=2000)
    out = []
    for i in range(0, len(stream), 3):  # arbitrary split points
        out += dec.feed(stream[i:i + 3])
    assert out == payloads and dec.buffered == 0
    dec.feed(frame(b"partial")[:6])
    assert dec.buffered == 6  # a truncated tail waits, it is not a frame
    big = FrameDecoder(max_frame_bytes=10)
    with pytest.raises(FrameTooLarge):
        big.feed(struct.pack(">I", 11))
    with pytest.raises(FrameTooLarge):
        big.feed(b"")  # the stream stays failed


@given(st.binary(max_size=200))
def test_decoding_random_bytes_raises_only_protocol_errors(data: bytes) -> None:
    try:
        decode(data)
    except RemoteProtocolError:
        pass
    try:
        decode_envelope(data)
    except RemoteProtocolError:
        pass
