"""Bad input on a real server's client port: frames above jute.maxbuffer, truncated or
garbage frames close that connection (ZooKeeper's behaviour), an unknown opcode gets
the Unimplemented error; the server keeps serving everyone else and loses nothing it
acknowledged. Four-letter words answer as ZooKeeper's do."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from kazoo.client import KazooClient

from giants.core.launcher import LocalCluster
from giants.zookeeper._jute import DEFAULT_MAX_BUFFER, Op, encode_connect, encode_request
from giants.zookeeper.testing import four_letter

pytestmark = pytest.mark.real


def _framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _session(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(encode_connect(0, 4000, 0, b"\0" * 16))
    _read_frame(s)
    return s


def _read_frame(s: socket.socket) -> bytes:
    head = _read_exact(s, 4)
    return _read_exact(s, struct.unpack(">i", head)[0])


def _read_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def _closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return True


@pytest.mark.parametrize("bad", [
    struct.pack(">i", DEFAULT_MAX_BUFFER + 1) + b"x" * 64,   # above jute.maxbuffer
    struct.pack(">i", -7),                                  # negative length
    struct.pack(">i", 6) + struct.pack(">ih", 1, 1),        # truncated header
    _framed(encode_request(1, Op.CREATE, ["/x", b"", [[31, "world", "anyone"]], 0])[4:-3]),
    _framed(b"\x00\x00\x00\x01\x00\x00\x00\x05" + b"\xff" * 9),  # setData, garbage path
], ids=["oversize", "negative", "short-header", "cut-body", "garbage-body"])
def test_malformed_frames_close_the_connection_only(ensemble: LocalCluster, bad: bytes) -> None:
    address = ensemble.endpoints["server"][0]
    zk = KazooClient(hosts=address)
    zk.start(timeout=15)
    try:
        path = zk.create("/bad-input-", b"kept", sequence=True)
        s = _session(address)
        s.sendall(bad)
        assert _closed(s)
        s.close()
        assert zk.get(path)[0] == b"kept"
        zk.set(path, b"still serving")
        assert zk.get(path)[0] == b"still serving"
    finally:
        zk.stop()
        zk.close()


def test_unknown_opcode_gets_unimplemented(ensemble: LocalCluster) -> None:
    s = _session(ensemble.endpoints["server"][1])
    s.sendall(struct.pack(">iii", 8, 5, 4242))
    xid, _zxid, err = struct.unpack(">iqi", _read_frame(s)[:16])
    assert (xid, err) == (5, -6)
    s.sendall(encode_request(6, Op.EXISTS, ["/", False]))
    xid, _zxid, err = struct.unpack(">iqi", _read_frame(s)[:16])
    assert (xid, err) == (6, 0)
    s.close()


def test_four_letter_words(ensemble: LocalCluster) -> None:
    address = ensemble.endpoints["server"][2]
    assert four_letter(address, b"ruok") == "imok"
    assert four_letter(address, b"isro") == "rw"
    assert "zookeeper.version=3.8.0" in four_letter(address, b"envi")
    assert "Mode: " in four_letter(address, b"srvr")
    zk: Any = KazooClient(hosts=address)
    zk.start(timeout=15)
    try:
        assert zk.server_version()[:2] == (3, 8)
    finally:
        zk.stop()
        zk.close()
