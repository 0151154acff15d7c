"""The jute wire protocol of ZooKeeper, sans-I/O (ZooKeeper paper section 2 API, and
``zookeeper.jute`` / ``ZooDefs.OpCode`` / ``KeeperException.Code`` for the encoding).

Everything is big-endian. A frame is ``int32 length`` + payload; ``ustring`` and
``buffer`` are ``int32 length`` + bytes (-1 = null); ``vector`` is ``int32 count`` +
elements; ``bool`` is one byte. The first frame of a connection is a ``ConnectRequest``
(no request header) followed by one ``readOnly`` byte; every later frame is
``RequestHeader{xid, type}`` + body, answered by ``ReplyHeader{xid, zxid, err}`` + body
(only when ``err == 0``). A connection whose first four bytes spell a four-letter word
(``ruok``, ``envi``...) is an admin command instead.

Decoded requests are plain lists (so they can go into the replicated log as they are):
see ``decode_request``. Anything malformed raises ``JuteError``; the server closes that
connection (what ZooKeeper does) and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from giants.core.errors import RemoteProtocolError

__all__ = [
    "JuteError", "Op", "Err", "Event", "Perm", "FrameReader", "Reader", "Writer",
    "decode_connect", "encode_connect_response", "decode_request", "encode_request",
    "encode_connect", "reply_header", "watch_event", "encode_stat", "Stat", "STAT",
    "DEFAULT_MAX_BUFFER", "FOUR_LETTER_WORDS", "WATCH_XID", "PING_XID", "AUTH_XID",
    "WRITE_OPS", "READ_OPS",
]

# jute.maxbuffer's default (0xfffff): ZooKeeper refuses a packet longer than this.
DEFAULT_MAX_BUFFER = 0xFFFFF
# Elements of one vector; bounds a hostile count before anything is allocated.
MAX_VECTOR = 1 << 20

WATCH_XID = -1
PING_XID = -2
AUTH_XID = -4

FOUR_LETTER_WORDS = frozenset({b"ruok", b"envi", b"isro", b"srvr", b"stat", b"mntr", b"conf"})

_I = struct.Struct(">i")
_Q = struct.Struct(">q")
_HDR = struct.Struct(">iqi")
_REQ = struct.Struct(">ii")
STAT = struct.Struct(">qqqqiiiqiiq")


# ``Reader``/``Writer`` name their methods after jute's types (``int``, ``bool``), which
# shadows the builtins inside those classes; annotations there use these aliases.
_Int = int
_Bool = bool


class JuteError(RemoteProtocolError):
    """A malformed, truncated or oversized jute frame."""


class Op:
    NOTIFICATION = 0
    CREATE = 1
    DELETE = 2
    EXISTS = 3
    GET_DATA = 4
    SET_DATA = 5
    GET_ACL = 6
    SET_ACL = 7
    GET_CHILDREN = 8
    SYNC = 9
    PING = 11
    GET_CHILDREN2 = 12
    CHECK = 13
    MULTI = 14
    CREATE2 = 15
    CREATE_CONTAINER = 19
    AUTH = 100
    CLOSE = -11


WRITE_OPS = frozenset({Op.CREATE, Op.DELETE, Op.SET_DATA, Op.SET_ACL, Op.SYNC, Op.MULTI,
                       Op.CREATE2, Op.CREATE_CONTAINER, Op.CHECK})
READ_OPS = frozenset({Op.EXISTS, Op.GET_DATA, Op.GET_ACL, Op.GET_CHILDREN, Op.GET_CHILDREN2})
MULTI_SUB_OPS = frozenset({Op.CREATE, Op.CREATE2, Op.CREATE_CONTAINER, Op.DELETE,
                           Op.SET_DATA, Op.CHECK})


class Err:
    OK = 0
    SYSTEM_ERROR = -1
    RUNTIME_INCONSISTENCY = -2
    UNIMPLEMENTED = -6
    BAD_ARGUMENTS = -8
    NO_NODE = -101
    NO_AUTH = -102
    BAD_VERSION = -103
    NO_CHILDREN_FOR_EPHEMERALS = -108
    NODE_EXISTS = -110
    NOT_EMPTY = -111
    SESSION_EXPIRED = -112
    INVALID_ACL = -114
    AUTH_FAILED = -115
    SESSION_MOVED = -118


class Event:
    CREATED = 1
    DELETED = 2
    DATA_CHANGED = 3
    CHILDREN_CHANGED = 4


class Perm:
    READ = 1
    WRITE = 2
    CREATE = 4
    DELETE = 8
    ADMIN = 16
    ALL = 31


@dataclass(slots=True)
class Stat:
    czxid: int = 0
    mzxid: int = 0
    ctime: int = 0
    mtime: int = 0
    version: int = 0
    cversion: int = 0
    aversion: int = 0
    ephemeral_owner: int = 0
    data_length: int = 0
    num_children: int = 0
    pzxid: int = 0

    def as_list(self) -> list[int]:
        return [self.czxid, self.mzxid, self.ctime, self.mtime, self.version, self.cversion,
                self.aversion, self.ephemeral_owner, self.data_length, self.num_children,
                self.pzxid]


def encode_stat(stat: list[int]) -> bytes:
    return STAT.pack(*stat)


class FrameReader:
    """Splits a byte stream into jute frames. ``feed`` returns whole frames; a length
    prefix that is negative or above ``max_buffer`` raises ``JuteError`` (ZooKeeper's
    "Len error": the connection is closed). ``first`` tells the caller to check
    ``four_letter_word`` before the first frame."""

    def __init__(self, max_buffer: int = DEFAULT_MAX_BUFFER) -> None:
        self.max_buffer = max_buffer
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _I.unpack_from(buf, pos)
            if n < 0 or n > self.max_buffer:
                raise JuteError(f"frame length {n} outside [0, {self.max_buffer}]")
            if len(buf) - pos - 4 < n:
                break
            out.append(bytes(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        if pos:
            del buf[:pos]
        return out

    def four_letter_word(self) -> bytes | None:
        """The admin word if the buffered stream starts with one."""
        head = bytes(self._buf[:4])
        return head if head in FOUR_LETTER_WORDS else None

    def pending(self) -> int:
        return len(self._buf)


class Reader:
    """Reads jute primitives from one frame; every shortfall is a ``JuteError``."""

    def __init__(self, data: bytes, pos: _Int = 0) -> None:
        self.data = data
        self.pos = pos

    def _take(self, n: _Int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise JuteError(f"truncated frame: want {n} bytes at {self.pos} of {len(self.data)}")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def int(self) -> _Int:
        return int(_I.unpack(self._take(4))[0])

    def long(self) -> _Int:
        return int(_Q.unpack(self._take(8))[0])

    def bool(self) -> _Bool:
        return self._take(1) != b"\x00"

    def buffer(self) -> bytes | None:
        n = self.int()
        if n == -1:
            return None
        if n < -1:
            raise JuteError(f"negative buffer length {n}")
        return self._take(n)

    def ustring(self) -> str | None:
        raw = self.buffer()
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JuteError(f"string is not UTF-8: {exc}") from None

    def path(self) -> str:
        p = self.ustring()
        if p is None:
            raise JuteError("null path")
        return p

    def count(self) -> _Int:
        n = self.int()
        if n == -1:
            return 0
        if n < 0 or n > MAX_VECTOR or n > len(self.data) - self.pos:
            raise JuteError(f"vector count {n} impossible here")
        return n

    def acls(self) -> list[list[Any]]:
        out = []
        for _ in range(self.count()):
            perms = self.int()
            scheme = self.ustring() or ""
            ident = self.ustring() or ""
            out.append([perms, scheme, ident])
        return out

    def done(self) -> None:
        if self.pos != len(self.data):
            raise JuteError(f"{len(self.data) - self.pos} trailing bytes")


class Writer:
    """Builds one jute payload."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def int(self, v: _Int) -> Writer:
        self.parts.append(_I.pack(v))
        return self

    def long(self, v: _Int) -> Writer:
        self.parts.append(_Q.pack(v))
        return self

    def bool(self, v: _Bool) -> Writer:
        self.parts.append(b"\x01" if v else b"\x00")
        return self

    def buffer(self, v: bytes | None) -> Writer:
        if v is None:
            return self.int(-1)
        self.parts.append(_I.pack(len(v)))
        self.parts.append(v)
        return self

    def ustring(self, v: str | None) -> Writer:
        return self.buffer(None if v is None else v.encode("utf-8"))

    def raw(self, b: bytes) -> Writer:
        self.parts.append(b)
        return self

    def strings(self, items: list[str]) -> Writer:
        self.int(len(items))
        for s in items:
            self.ustring(s)
        return self

    def acls(self, acls: list[list[Any]]) -> Writer:
        self.int(len(acls))
        for perms, scheme, ident in acls:
            self.int(perms).ustring(scheme).ustring(ident)
        return self

    def payload(self) -> bytes:
        return b"".join(self.parts)

    def frame(self) -> bytes:
        body = self.payload()
        return _I.pack(len(body)) + body


# -- connect -------------------------------------------------------------------------


def decode_connect(frame: bytes) -> tuple[int, int, int, bytes, bool]:
    """``(last_zxid_seen, timeout_ms, session_id, passwd, read_only)``."""
    r = Reader(frame)
    r.int()  # protocolVersion: 0 for every client we know
    last_zxid = r.long()
    timeout = r.int()
    session_id = r.long()
    passwd = r.buffer() or b""
    read_only = r.bool() if r.pos < len(frame) else False
    r.done()
    return last_zxid, timeout, session_id, passwd, read_only


def encode_connect(last_zxid: int, timeout_ms: int, session_id: int, passwd: bytes) -> bytes:
    return (Writer().int(0).long(last_zxid).int(timeout_ms).long(session_id).buffer(passwd)
            .bool(False).frame())


def encode_connect_response(timeout_ms: int, session_id: int, passwd: bytes) -> bytes:
    return Writer().int(0).int(timeout_ms).long(session_id).buffer(passwd).bool(False).frame()


def reply_header(xid: int, zxid: int, err: int) -> bytes:
    return _HDR.pack(xid, zxid, err)


def watch_event(event_type: int, path: str) -> bytes:
    return (Writer().raw(_HDR.pack(WATCH_XID, -1, 0)).int(event_type).int(3).ustring(path)
            .frame())


# -- requests ------------------------------------------------------------------------


def _decode_body(op: int, r: Reader) -> list[Any]:
    if op in (Op.CREATE, Op.CREATE2, Op.CREATE_CONTAINER):
        path = r.path()
        data = r.buffer() or b""
        return [path, data, r.acls(), r.int()]
    if op in (Op.DELETE, Op.CHECK):
        return [r.path(), r.int()]
    if op in (Op.EXISTS, Op.GET_DATA, Op.GET_CHILDREN, Op.GET_CHILDREN2):
        return [r.path(), r.bool()]
    if op == Op.SET_DATA:
        path = r.path()
        return [path, r.buffer() or b"", r.int()]
    if op in (Op.GET_ACL, Op.SYNC):
        return [r.path()]
    if op == Op.SET_ACL:
        path = r.path()
        return [path, r.acls(), r.int()]
    if op == Op.MULTI:
        return _decode_multi(r)
    if op == Op.AUTH:
        return [r.int(), r.ustring() or "", r.buffer() or b""]
    if op in (Op.PING, Op.CLOSE):
        return []
    raise AssertionError(op)


def _decode_multi(r: Reader) -> list[Any]:
    ops: list[Any] = []
    while True:
        op = r.int()
        done = r.bool()
        r.int()
        if done:
            return ops
        if op not in MULTI_SUB_OPS:
            raise JuteError(f"opcode {op} not allowed inside multi")
        if len(ops) >= MAX_VECTOR:
            raise JuteError("too many operations in one multi")
        ops.append([op, _decode_body(op, r)])


KNOWN_OPS = WRITE_OPS | READ_OPS | {Op.PING, Op.CLOSE, Op.AUTH}


def decode_request(frame: bytes) -> tuple[int, int, list[Any] | None]:
    """``(xid, opcode, body)``; ``body`` is None for an opcode we do not implement
    (answered with ``Unimplemented``). Raises ``JuteError`` for a malformed frame."""
    r = Reader(frame)
    xid = r.int()
    op = r.int()
    if op not in KNOWN_OPS or op == Op.CHECK:
        return xid, op, None
    body = _decode_body(op, r)
    r.done()
    return xid, op, body


def _encode_body(op: int, body: list[Any], w: Writer) -> None:
    if op in (Op.CREATE, Op.CREATE2, Op.CREATE_CONTAINER):
        w.ustring(body[0]).buffer(body[1]).acls(body[2]).int(body[3])
    elif op in (Op.DELETE, Op.CHECK):
        w.ustring(body[0]).int(body[1])
    elif op in (Op.EXISTS, Op.GET_DATA, Op.GET_CHILDREN, Op.GET_CHILDREN2):
        w.ustring(body[0]).bool(body[1])
    elif op == Op.SET_DATA:
        w.ustring(body[0]).buffer(body[1]).int(body[2])
    elif op in (Op.GET_ACL, Op.SYNC):
        w.ustring(body[0])
    elif op == Op.SET_ACL:
        w.ustring(body[0]).acls(body[1]).int(body[2])
    elif op == Op.MULTI:
        for sub_op, sub in body:
            w.int(sub_op).bool(False).int(-1)
            _encode_body(sub_op, sub, w)
        w.int(-1).bool(True).int(-1)
    elif op == Op.AUTH:
        w.int(body[0]).ustring(body[1]).buffer(body[2])


def encode_request(xid: int, op: int, body: list[Any]) -> bytes:
    """A client's request frame (our own client, the simulator's clients, tests)."""
    w = Writer().int(xid).int(op)
    _encode_body(op, body, w)
    return w.frame()
