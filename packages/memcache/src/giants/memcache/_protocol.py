"""The memcached wire protocol, sans-I/O: bytes in, ``Request`` objects out.

Scaling Memcache at Facebook (NSDI 2013) §2: memcached is the per-server building block
and every client speaks its text protocol; this module is that protocol's request side
(memcached's ``doc/protocol.txt``: the text commands and the meta commands
``mg/ms/md/ma/mn/me``). ``RequestParser.feed(data)`` buffers bytes; ``next()`` returns the
next complete ``Request`` or ``None`` when more bytes are needed. The server
(``_session``) and the router (``_router``) both parse with it.

Rules, mirroring memcached 1.6 byte for byte:

* a command line ends at ``\\n`` (``\\r\\n`` normally); tokens are split on spaces;
* storage commands (``set/add/replace/append/prepend/cas`` and ``ms``) carry a data block
  of ``<bytes>`` bytes plus ``\\r\\n``; a block whose last two bytes are not ``\\r\\n``
  is answered ``CLIENT_ERROR bad data chunk`` and parsing resumes after it;
* a value over the item size limit is answered ``SERVER_ERROR object too large for
  cache`` and its block is *swallowed* so the connection stays usable;
* a malformed storage line (bad number, key over 250 bytes) is answered ``CLIENT_ERROR
  bad command line format`` and its block is *not* swallowed (memcached reads it as the
  next command line and says ``ERROR``);
* a line longer than ``MAX_LINE_BYTES`` without a newline closes the connection
  (``CLIENT_ERROR line is too long``), except ``get``-style lines which may carry many
  keys up to ``MAX_MULTIGET_LINE_BYTES``.

A parse error is a ``Request`` with ``error`` set (the reply line to send) so the caller
keeps its reply order; ``close`` asks the caller to close the connection after replying.
"""

from __future__ import annotations

from typing import Final

from giants.memcache._slabs import item_total_size

__all__ = [
    "Request",
    "RequestParser",
    "KEY_MAX_BYTES",
    "DEFAULT_ITEM_SIZE_MAX",
    "MAX_LINE_BYTES",
    "STORAGE_COMMANDS",
    "valid_key",
]

# memcached's KEY_MAX_LENGTH.
KEY_MAX_BYTES: Final = 250
# memcached's default -I (item size max): 1 MB.
DEFAULT_ITEM_SIZE_MAX: Final = 1024 * 1024
# memcached closes a connection whose command line exceeds this without a newline
# (2048 there; ours is larger so long meta flag lists never trip it).
MAX_LINE_BYTES: Final = 8192
# A multi-get line may name many keys; bound it so one client cannot grow our buffer
# without limit.
MAX_MULTIGET_LINE_BYTES: Final = 4 * 1024 * 1024
# Compact the input buffer once this many consumed bytes sit at its front.
_COMPACT_BYTES: Final = 64 * 1024

STORAGE_COMMANDS: Final = frozenset({b"set", b"add", b"replace", b"append", b"prepend", b"cas"})
_GET_PREFIXES: Final = (b"get ", b"gets ", b"gat ", b"gats ")
_MAX_U32: Final = 2**32 - 1
_MAX_U64: Final = 2**64 - 1

BAD_FORMAT: Final = b"CLIENT_ERROR bad command line format\r\n"
BAD_CHUNK: Final = b"CLIENT_ERROR bad data chunk\r\n"
TOO_LARGE: Final = b"SERVER_ERROR object too large for cache\r\n"
LINE_TOO_LONG: Final = b"CLIENT_ERROR line is too long\r\n"


class Request:
    """One parsed command. ``name`` is the command word (``b"get"``), ``args`` the other
    tokens, ``data`` the data block of a storage command. If ``error`` is set the request
    failed to parse and ``error`` is the complete reply; ``close`` then says whether the
    connection must close after it."""

    __slots__ = ("args", "close", "data", "error", "name", "noreply", "numbers")

    def __init__(self, name: bytes, args: list[bytes], data: bytes | None = None,
                 error: bytes | None = None, close: bool = False) -> None:
        self.name = name
        self.args = args
        self.data = data
        self.error = error
        self.close = close
        self.noreply = bool(args) and args[-1] == b"noreply"
        # A text storage command's (flags, exptime, bytes, cas), parsed once here.
        self.numbers: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __repr__(self) -> str:
        return f"Request({self.name!r}, {self.args!r}, data={self.data!r}, error={self.error!r})"

    def encode(self) -> bytes:
        """The request back on the wire (what the router forwards)."""
        line = b" ".join((self.name, *self.args)) + b"\r\n"
        if self.data is not None:
            return line + self.data + b"\r\n"
        return line


def valid_key(key: bytes) -> bool:
    """A key memcached accepts: 1..250 bytes, no control characters or spaces."""
    if not key or len(key) > KEY_MAX_BYTES:
        return False
    return all(c > 32 and c != 127 for c in key)


def _error(reply: bytes, *, close: bool = False) -> Request:
    return Request(b"", [], error=reply, close=close)


class RequestParser:
    """Incremental request parser (see the module docstring)."""

    __slots__ = ("_buf", "_pending", "_pos", "_swallow", "item_size_max")

    def __init__(self, item_size_max: int = DEFAULT_ITEM_SIZE_MAX) -> None:
        self._buf = bytearray()
        self._pos = 0
        # A storage request waiting for its data block: (request, block length).
        self._pending: tuple[Request, int] | None = None
        # Bytes of an oversized value still to be discarded.
        self._swallow = 0
        self.item_size_max = item_size_max

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > _COMPACT_BYTES:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (a partial command or value)."""
        return len(self._buf) - self._pos + self._swallow

    def idle(self) -> bool:
        """Nothing buffered: the next bytes start a new request."""
        return self._pos == len(self._buf) and self._pending is None and not self._swallow

    def in_value(self) -> bool:
        """True while a data block is only partly received (a mid-value disconnect)."""
        return self._pending is not None or self._swallow > 0

    def next(self) -> Request | None:
        """The next complete request, or ``None`` until more bytes are fed."""
        buf = self._buf
        if self._swallow:
            avail = len(buf) - self._pos
            take = min(avail, self._swallow)
            self._pos += take
            self._swallow -= take
            if self._swallow:
                return None
        if self._pending is not None:
            return self._finish_block()
        pos = self._pos
        nl = buf.find(b"\n", pos)
        if nl < 0:
            waiting = len(buf) - pos
            if waiting > MAX_LINE_BYTES and not (
                    buf.startswith(_GET_PREFIXES, pos) and waiting <= MAX_MULTIGET_LINE_BYTES):
                self._pos = len(buf)
                return _error(LINE_TOO_LONG, close=True)
            return None
        end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
        tokens = bytes(buf[pos:end]).split()
        self._pos = nl + 1
        if not tokens:
            return _error(b"ERROR\r\n")
        name = tokens[0]
        if name in STORAGE_COMMANDS:
            return self._storage_line(name, tokens)
        if name == b"ms":
            return self._meta_set_line(tokens)
        return Request(name, tokens[1:])

    # -- storage commands -------------------------------------------------------------

    def _storage_line(self, name: bytes, tokens: list[bytes]) -> Request | None:
        want = 7 if name == b"cas" else 6
        if len(tokens) not in (want - 1, want):
            return _error(b"ERROR\r\n")
        if len(tokens) == want and tokens[-1] != b"noreply":
            return _error(b"ERROR\r\n")
        key = tokens[1]
        try:
            flags = int(tokens[2])
            exptime = int(tokens[3])
            nbytes = int(tokens[4])
            cas = int(tokens[5]) if name == b"cas" else 0
        except ValueError:
            return _error(BAD_FORMAT)
        if len(key) > KEY_MAX_BYTES or nbytes < 0 or not 0 <= flags <= _MAX_U32:
            return _error(BAD_FORMAT)
        req = Request(name, tokens[1:])
        req.numbers = (flags, exptime, nbytes, cas)
        return self._expect_block(req, len(key), nbytes)

    def _meta_set_line(self, tokens: list[bytes]) -> Request | None:
        if len(tokens) < 3:
            return _error(b"ERROR\r\n" if len(tokens) < 2 else BAD_FORMAT)
        try:
            nbytes = int(tokens[2])
        except ValueError:
            return _error(BAD_FORMAT)
        if nbytes < 0 or len(tokens[1]) > KEY_MAX_BYTES:
            return _error(BAD_FORMAT)
        return self._expect_block(Request(b"ms", tokens[1:]), len(tokens[1]), nbytes)

    def _expect_block(self, req: Request, key_len: int, nbytes: int) -> Request | None:
        if item_total_size(key_len, nbytes) > self.item_size_max:
            self._swallow = nbytes + 2
            self.next_swallow_now()
            return _error(TOO_LARGE)
        self._pending = (req, nbytes)
        return self._finish_block()

    def next_swallow_now(self) -> None:
        """Discard as much of an oversized block as is already buffered."""
        avail = len(self._buf) - self._pos
        take = min(avail, self._swallow)
        self._pos += take
        self._swallow -= take

    def _finish_block(self) -> Request | None:
        assert self._pending is not None
        req, nbytes = self._pending
        pos = self._pos
        buf = self._buf
        if len(buf) - pos < nbytes + 2:
            return None
        self._pending = None
        self._pos = pos + nbytes + 2
        if buf[pos + nbytes: pos + nbytes + 2] != b"\r\n":
            return _error(BAD_CHUNK)
        req.data = bytes(buf[pos: pos + nbytes])
        return req
