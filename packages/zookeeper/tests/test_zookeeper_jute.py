"""The jute codec (zookeeper.jute layouts): round trips, and fuzzing -- malformed,
truncated and oversized input raises ``JuteError`` and nothing else."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giants.zookeeper._jute import (
    DEFAULT_MAX_BUFFER,
    FrameReader,
    JuteError,
    Op,
    decode_connect,
    decode_request,
    encode_connect,
    encode_request,
)

ACL = [[31, "world", "anyone"]]
SAMPLES = [
    (Op.CREATE, ["/a", b"data", ACL, 3]),
    (Op.CREATE2, ["/b", b"", ACL, 0]),
    (Op.DELETE, ["/a", 4]),
    (Op.EXISTS, ["/a", True]),
    (Op.GET_DATA, ["/a", False]),
    (Op.SET_DATA, ["/a", b"x" * 100, -1]),
    (Op.GET_ACL, ["/a"]),
    (Op.SET_ACL, ["/a", [[1, "digest", "u:h"]], 2]),
    (Op.GET_CHILDREN, ["/", True]),
    (Op.GET_CHILDREN2, ["/", False]),
    (Op.SYNC, ["/"]),
    (Op.MULTI, [[Op.CREATE, ["/m", b"", ACL, 0]], [Op.CHECK, ["/m", 0]],
                [Op.DELETE, ["/m", -1]], [Op.SET_DATA, ["/n", b"v", 1]]]),
    (Op.AUTH, [0, "digest", b"user:pw"]),
    (Op.PING, []),
    (Op.CLOSE, []),
]


@pytest.mark.parametrize(("op", "body"), SAMPLES, ids=[str(s[0]) for s in SAMPLES])
def test_request_round_trip(op: int, body: list[object]) -> None:
    frames = FrameReader().feed(encode_request(7, op, body))
    assert decode_request(frames[0]) == (7, op, body)


def test_connect_round_trip_and_read_only_byte_optional() -> None:
    frame = FrameReader().feed(encode_connect(5, 10_000, 0x1234, b"p" * 16))[0]
    assert decode_connect(frame) == (5, 10_000, 0x1234, b"p" * 16, False)
    assert decode_connect(frame[:-1]) == (5, 10_000, 0x1234, b"p" * 16, False)


def test_unknown_opcode_is_reported_not_raised() -> None:
    assert decode_request(struct.pack(">ii", 3, 999)) == (3, 999, None)
    assert decode_request(struct.pack(">ii", 3, Op.CHECK) + b"junk")[2] is None


def test_frame_reader_splits_across_chunks_and_refuses_oversize() -> None:
    data = encode_request(1, Op.SYNC, ["/"]) + encode_request(2, Op.PING, [])
    reader = FrameReader()
    got = []
    for i in range(len(data)):
        got += reader.feed(data[i:i + 1])
    assert [decode_request(f)[0] for f in got] == [1, 2]
    with pytest.raises(JuteError):
        FrameReader().feed(struct.pack(">i", DEFAULT_MAX_BUFFER + 1))
    with pytest.raises(JuteError):
        FrameReader().feed(struct.pack(">i", -5))


def test_truncated_and_trailing_bytes_are_errors() -> None:
    frame = FrameReader().feed(encode_request(1, Op.CREATE, ["/a", b"d", ACL, 0]))[0]
    for cut in range(8, len(frame)):
        with pytest.raises(JuteError):
            decode_request(frame[:cut])
    with pytest.raises(JuteError):
        decode_request(frame + b"\0")
    bad_len = struct.pack(">ii", 1, Op.SYNC) + struct.pack(">i", 1 << 30)
    with pytest.raises(JuteError):
        decode_request(bad_len)
    huge_vector = struct.pack(">ii", 1, Op.CREATE) + struct.pack(">i", 2) + b"/a" + \
        struct.pack(">i", 0) + struct.pack(">i", 1 << 29)
    with pytest.raises(JuteError):
        decode_request(huge_vector)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_frames_only_raise_jute_error(data: bytes) -> None:
    for decode in (decode_request, decode_connect):
        try:
            decode(data)
        except JuteError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_mutated_valid_frames(sample: tuple[int, list[object]], data: st.DataObject) -> None:
    frame = bytearray(FrameReader().feed(encode_request(9, *sample))[0])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
    try:
        decode_request(bytes(frame))
    except JuteError:
        pass
