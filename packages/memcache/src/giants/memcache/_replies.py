"""memcached replies, sans-I/O: where one reply ends, and the VALUE blocks inside one.

The router (``router``) forwards requests and must know where each server reply ends
before it can answer its client; the client library (``client``) reads replies the same
way. The framing depends on the request (memcached ``doc/protocol.txt``):

* ``BLOCKS`` -- get/gets/gat/gats and stats: ``VALUE``/``STAT`` lines (a ``VALUE`` line
  is followed by its data block) until ``END``, or one error line;
* ``META`` -- meta commands: one line, except ``VA <n> ...`` which is followed by a data
  block of ``n`` bytes;
* ``LINE`` -- everything else: one line.
"""

from __future__ import annotations

from typing import Final

__all__ = ["LINE", "BLOCKS", "META", "reply_kind", "reply_length", "split_values"]

LINE: Final = 0
BLOCKS: Final = 1
META: Final = 2

_BLOCK_COMMANDS: Final = frozenset({b"get", b"gets", b"gat", b"gats", b"stats"})
_META_COMMANDS: Final = frozenset({b"mg", b"ms", b"md", b"ma", b"mn", b"me"})
_ERRORS: Final = (b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")


def reply_kind(command: bytes) -> int:
    if command in _BLOCK_COMMANDS:
        return BLOCKS
    if command in _META_COMMANDS:
        return META
    return LINE


def reply_length(buf: bytes | bytearray, kind: int, start: int = 0) -> int:
    """The length of the complete reply at ``buf[start:]``, or -1 if it is not all there."""
    pos = start
    while True:
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return -1
        line = bytes(buf[pos:nl]).rstrip(b"\r")
        end = nl + 1
        if kind == LINE:
            return end - start
        if kind == META:
            if line.startswith(b"VA "):
                n = int(line.split()[1])
                return end + n + 2 - start if len(buf) >= end + n + 2 else -1
            return end - start
        if line == b"END" or line.startswith(_ERRORS):
            return end - start
        if line.startswith(b"VALUE "):
            n = int(line.split()[3])
            if len(buf) < end + n + 2:
                return -1
            end += n + 2
        pos = end


def split_values(reply: bytes) -> dict[bytes, bytes]:
    """The ``VALUE`` blocks of a retrieval reply, by key (each with its line and data)."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while True:
        nl = reply.find(b"\n", pos)
        if nl < 0:
            return out
        line = reply[pos:nl].rstrip(b"\r")
        if not line.startswith(b"VALUE "):
            return out
        tokens = line.split()
        end = nl + 1 + int(tokens[3]) + 2
        out[tokens[1]] = reply[pos:end]
        pos = end
