"""One client connection to a memcached server, sans-I/O: request bytes in, reply bytes out.

Scaling Memcache at Facebook §2: clients talk to each memcached server directly with the
text protocol. ``Session.feed(data, now)`` parses every complete request in ``data``
(``_protocol``), executes it on the shared ``Store`` and returns the replies to send, in
order; requests may be pipelined. Meta commands are ``_meta``'s. ``noreply`` suppresses
a command's reply (errors included for storage commands, as memcached does). ``quit``
and an over-long line set ``closed``: send what was returned, then close.

Error strings are memcached 1.6's: ``ERROR`` (unknown command or wrong arity),
``CLIENT_ERROR bad command line format`` (bad key or number), ``CLIENT_ERROR bad data
chunk``, ``CLIENT_ERROR invalid numeric delta argument``, ``CLIENT_ERROR cannot increment
or decrement non-numeric value``, ``SERVER_ERROR object too large for cache``,
``SERVER_ERROR out of memory storing object``. The connection stays usable after each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from giants.memcache import _meta
from giants.memcache._protocol import (
    BAD_FORMAT,
    KEY_MAX_BYTES,
    Request,
    RequestParser,
)
from giants.memcache._slabs import item_total_size
from giants.memcache._store import Item, ItemTooLarge, NonNumeric, OutOfMemory, Store

__all__ = ["Server", "Session", "VERSION"]

VERSION: Final = "1.6.18"
ERROR: Final = b"ERROR\r\n"
END: Final = b"END\r\n"
STORED: Final = b"STORED\r\n"
BAD_DELTA: Final = b"CLIENT_ERROR invalid numeric delta argument\r\n"
NON_NUMERIC: Final = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
TOO_LARGE: Final = b"SERVER_ERROR object too large for cache\r\n"
NO_MEMORY: Final = b"SERVER_ERROR out of memory storing object\r\n"
BAD_DELETE: Final = b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
_MAX_U64: Final = 2**64 - 1
_MAX_U32: Final = 2**32 - 1
# Replies produced per feed before the driver must send them (see ``Session.feed``).
MAX_REPLY_BATCH_BYTES: Final = 4 * 1024 * 1024


@dataclass
class Server:
    """What every session of one server shares: the store and server-wide settings."""

    store: Store
    pid: int = 0
    started_at: float = 0.0
    verbosity: int = 0
    curr_connections: int = 0
    total_connections: int = 0
    extra_stats: dict[str, Callable[[], object]] = field(default_factory=dict)

    def stats_lines(self, now: float) -> list[tuple[str, object]]:
        st = self.store
        lines: list[tuple[str, object]] = [
            ("pid", self.pid), ("uptime", int(now - self.started_at)), ("time", int(now)),
            ("version", VERSION), ("pointer_size", 64), ("curr_connections",
                                                         self.curr_connections),
            ("total_connections", self.total_connections), ("threads", 1),
            ("limit_maxbytes", st.slabs.limit_bytes), ("bytes", st.bytes_used),
            ("curr_items", len(st)),
        ]
        lines += list(st.stats.as_dict().items())
        lines += [(k, fn()) for k, fn in self.extra_stats.items()]
        return lines


def _values(keys: list[bytes], lookup: Callable[[bytes], Item | None], with_cas: bool
            ) -> bytes:
    """A retrieval reply: a ``VALUE`` block per live key found by ``lookup``, then END
    (lease placeholders and stale items are misses for text commands)."""
    out = []
    for key in keys:
        if len(key) > KEY_MAX_BYTES:
            return BAD_FORMAT
        it = lookup(key)
        if it is None or it.vivified or it.stale:
            continue
        v = it.value
        cas = b" %d" % it.cas if with_cas else b""
        out.append(b"VALUE %b %d %d%b\r\n%b\r\n" % (key, it.flags, len(v), cas, v))
    out.append(END)
    return b"".join(out)


def _parse_int(token: bytes) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


class Session:
    """See the module docstring."""

    __slots__ = ("_backlog", "_handlers", "closed", "parser", "server", "store")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.store = server.store
        self.parser = RequestParser(server.store.item_size_max)
        self.closed = False
        self._backlog = False
        self._handlers: dict[bytes, Callable[[Request, float], bytes | None]] = {
            b"get": self._get, b"gets": self._gets, b"gat": self._gat, b"gats": self._gats,
            b"set": self._storage, b"add": self._storage, b"replace": self._storage,
            b"append": self._storage, b"prepend": self._storage, b"cas": self._storage,
            b"delete": self._delete, b"incr": self._arith, b"decr": self._arith,
            b"touch": self._touch, b"flush_all": self._flush_all, b"stats": self._stats,
            b"version": self._version, b"verbosity": self._verbosity, b"quit": self._quit,
            b"cache_memlimit": self._memlimit, b"shutdown": self._shutdown,
            b"mg": self._meta, b"ms": self._meta, b"md": self._meta, b"ma": self._meta,
            b"mn": self._meta, b"me": self._meta,
        }

    def feed(self, data: bytes, now: float) -> bytes:
        """Replies to the complete requests in the bytes received so far -- all of them,
        or as many as fit ``MAX_REPLY_BATCH_BYTES`` of replies; then ``backlog()`` is
        True and the driver calls ``feed(b"", now)`` again once it has sent these
        (a pipeline of gets for large values cannot make us buffer without limit)."""
        parser = self.parser
        if data[:4] == b"get " and data[-2:] == b"\r\n" and parser.idle():
            # Fast path for the commonest request, one complete single-key get: the
            # same reply as the general path, without building a Request.
            key = data[4:-2]
            if key.split() == [key] and b"\n" not in key:
                return self._retrieve([key], now, False)
        elif data[:4] == b"set " and parser.idle():
            reply = self._fast_set(data, now)
            if reply is not None:
                return reply
        if data:
            parser.feed(data)
        out: list[bytes] = []
        size = 0
        handlers = self._handlers
        self._backlog = False
        while not self.closed:
            if size > MAX_REPLY_BATCH_BYTES:
                self._backlog = True
                break
            req = parser.next()
            if req is None:
                break
            if req.error is not None:
                out.append(req.error)
                if req.close:
                    self.closed = True
                continue
            handler = handlers.get(req.name)
            reply = ERROR if handler is None else handler(req, now)
            if reply is not None:
                out.append(reply)
                size += len(reply)
        return b"".join(out)

    def backlog(self) -> bool:
        """True if ``feed`` stopped at the reply limit with requests left to serve."""
        return self._backlog

    def _fast_set(self, data: bytes, now: float) -> bytes | None:
        """One complete, well-formed ``set`` without noreply in ``data``: stored
        directly; None (use the general path) for anything else."""
        eol = data.find(b"\r\n")
        if eol < 0:
            return None
        tokens = data[:eol].split()
        if len(tokens) != 5 or not (tokens[2].isdigit() and tokens[3].isdigit()
                                    and tokens[4].isdigit()):
            return None
        key, nbytes = tokens[1], int(tokens[4])
        start = eol + 2
        if (len(data) != start + nbytes + 2 or data[-2:] != b"\r\n"
                or len(key) > KEY_MAX_BYTES or int(tokens[2]) > _MAX_U32
                or item_total_size(len(key), nbytes) > self.store.item_size_max
                or data.count(b"\n", 0, start) != 1):
            return None
        try:
            self.store.store(b"set", key, data[start:-2], int(tokens[2]), int(tokens[3]), now)
        except OutOfMemory:
            return NO_MEMORY
        return STORED

    # -- retrieval --------------------------------------------------------------------

    def _get(self, req: Request, now: float) -> bytes:
        return self._retrieve(req.args, now, False)

    def _gets(self, req: Request, now: float) -> bytes:
        return self._retrieve(req.args, now, True)

    def _retrieve(self, keys: list[bytes], now: float, with_cas: bool) -> bytes:
        if not keys:
            return ERROR
        get = self.store.get
        if len(keys) == 1:
            key = keys[0]
            if len(key) > KEY_MAX_BYTES:
                return BAD_FORMAT
            it = get(key, now)
            if it is None or it.vivified or it.stale:
                return END
            v = it.value
            if with_cas:
                return b"VALUE %b %d %d %d\r\n%b\r\nEND\r\n" % (key, it.flags, len(v), it.cas, v)
            return b"VALUE %b %d %d\r\n%b\r\nEND\r\n" % (key, it.flags, len(v), v)
        return _values(keys, lambda k: get(k, now), with_cas)

    def _gat(self, req: Request, now: float) -> bytes:
        return self._touch_retrieve(req.args, now, False)

    def _gats(self, req: Request, now: float) -> bytes:
        return self._touch_retrieve(req.args, now, True)

    def _touch_retrieve(self, args: list[bytes], now: float, with_cas: bool) -> bytes:
        if len(args) < 2:
            return ERROR
        exptime = _parse_int(args[0])
        if exptime is None:
            return b"CLIENT_ERROR invalid exptime argument\r\n"
        store = self.store
        return _values(args[1:], lambda k: store.touch(k, exptime, now), with_cas)

    # -- storage ----------------------------------------------------------------------

    def _storage(self, req: Request, now: float) -> bytes | None:
        data = req.data
        assert data is not None
        flags, exptime, _, cas = req.numbers
        try:
            result = self.store.store(req.name, req.args[0], data, flags, exptime, now, cas)
        except ItemTooLarge:
            return None if req.noreply else TOO_LARGE
        except OutOfMemory:
            return None if req.noreply else NO_MEMORY
        if req.noreply:
            return None
        return STORED if result == b"STORED" else result + b"\r\n"

    def _delete(self, req: Request, now: float) -> bytes | None:
        args = req.args
        if not args or len(args) > 3:
            return ERROR
        rest = args[1:-1] if req.noreply else args[1:]
        if rest and rest != [b"0"]:
            return BAD_DELETE
        if len(args[0]) > KEY_MAX_BYTES:
            return BAD_FORMAT
        found = self.store.delete(args[0], now)
        if req.noreply:
            return None
        return b"DELETED\r\n" if found else b"NOT_FOUND\r\n"

    def _arith(self, req: Request, now: float) -> bytes | None:
        args = req.args
        if len(args) not in (2, 3) or (len(args) == 3 and not req.noreply):
            return ERROR
        if len(args[0]) > KEY_MAX_BYTES:
            return BAD_FORMAT
        delta = _parse_int(args[1]) if args[1].isdigit() else None
        if delta is None or delta > _MAX_U64:
            return BAD_DELTA
        try:
            result = self.store.arith(args[0], req.name == b"incr", delta, now)
        except NonNumeric:
            return None if req.noreply else NON_NUMERIC
        except OutOfMemory:
            return None if req.noreply else NO_MEMORY
        if req.noreply:
            return None
        return b"NOT_FOUND\r\n" if result is None else b"%d\r\n" % result

    def _touch(self, req: Request, now: float) -> bytes | None:
        args = req.args
        if len(args) not in (2, 3) or (len(args) == 3 and not req.noreply):
            return ERROR
        if len(args[0]) > KEY_MAX_BYTES:
            return BAD_FORMAT
        exptime = _parse_int(args[1])
        if exptime is None:
            return b"CLIENT_ERROR invalid exptime argument\r\n"
        it = self.store.touch(args[0], exptime, now)
        if req.noreply:
            return None
        return b"NOT_FOUND\r\n" if it is None else b"TOUCHED\r\n"

    # -- administration ---------------------------------------------------------------

    def _flush_all(self, req: Request, now: float) -> bytes | None:
        args = req.args[:-1] if req.noreply else req.args
        if len(args) > 1:
            return ERROR
        delay = _parse_int(args[0]) if args else 0
        if delay is None:
            return BAD_FORMAT
        self.store.flush_all(now, delay)
        return None if req.noreply else b"OK\r\n"

    def _stats(self, req: Request, now: float) -> bytes:
        if not req.args:
            lines = self.server.stats_lines(now)
        elif req.args[0] == b"settings":
            lines = [("maxbytes", self.store.slabs.limit_bytes),
                     ("item_size_max", self.store.item_size_max),
                     ("verbosity", self.server.verbosity), ("growth_factor", 1.25),
                     ("delete_hold_s", self.store.delete_hold_s)]
        elif req.args[0] == b"slabs":
            lines = []
            for c in self.store.slabs.classes:
                if c.pages:
                    lines += [(f"{c.index}:chunk_size", c.chunk_size),
                              (f"{c.index}:total_pages", c.pages),
                              (f"{c.index}:used_chunks", c.used)]
            lines += [("active_slabs", sum(1 for c in self.store.slabs.classes if c.pages)),
                      ("total_malloced", self.store.slabs.pages_assigned
                       * self.store.slabs.page_size),
                      ("slabs_moved", self.store.slabs.pages_moved)]
        elif req.args[0] == b"items":
            lines = [(f"items:{c.index}:evicted", c.evictions)
                     for c in self.store.slabs.classes if c.pages]
        elif req.args[0] in (b"cachedump", b"detail", b"sizes", b"conns", b"reset"):
            lines = []
        else:
            return ERROR
        body = b"".join(b"STAT %b %b\r\n" % (k.encode(), str(v).encode()) for k, v in lines)
        return body + END

    def _version(self, req: Request, now: float) -> bytes:
        return b"VERSION %b\r\n" % VERSION.encode()

    def _verbosity(self, req: Request, now: float) -> bytes | None:
        args = req.args[:-1] if req.noreply else req.args
        if len(args) != 1 or _parse_int(args[0]) is None:
            return ERROR
        self.server.verbosity = int(args[0])
        return None if req.noreply else b"OK\r\n"

    def _memlimit(self, req: Request, now: float) -> bytes | None:
        args = req.args[:-1] if req.noreply else req.args
        mb = _parse_int(args[0]) if len(args) == 1 else None
        if mb is None or mb <= 0:
            return ERROR
        self.store.set_memory_limit(mb * 1024 * 1024)
        return None if req.noreply else b"OK\r\n"

    def _shutdown(self, req: Request, now: float) -> bytes:
        return b"ERROR: shutdown not enabled\r\n"

    def _quit(self, req: Request, now: float) -> None:
        self.closed = True
        return None

    def _meta(self, req: Request, now: float) -> bytes | None:
        return _meta.execute(self.store, req, now)
