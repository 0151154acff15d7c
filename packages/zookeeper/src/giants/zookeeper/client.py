"""A small trio ZooKeeper client speaking jute (for ``giants zookeeper`` and the
coordination adapter; Python users with threads can use kazoo against the same servers).

``async with ZkClient(["127.0.0.1:2181", ...]) as zk:`` opens a session on one server;
requests pipeline on its connection and replies come back in order. When the
connection breaks, requests in flight fail with ``ConnectionLoss`` (indefinite: the
write may have happened) and the client reconnects to the next server with its session
id and password, keeping the session and its ephemeral nodes (paper section 2.3:
"sessions ... allow a client to move transparently from one server to another"). A
session the ensemble expired raises ``SessionExpired`` (definite) on every later call.
Watches are one-shot: ``await zk.wait_for(event)`` with the ``trio.Event`` that
``exists/get/children(watch=True)`` returned.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from giants.core.errors import ConnectionLost, DefiniteError
from giants.core.transport._base import parse_address
from giants.zookeeper._jute import (
    PING_XID,
    STAT,
    WATCH_XID,
    Err,
    FrameReader,
    Op,
    Reader,
    Stat,
    encode_connect,
    encode_request,
)
from giants.zookeeper._tree import OPEN_ACL

__all__ = ["ZkClient", "ZkError", "ConnectionLoss", "SessionExpired", "NodeInfo"]

CONNECT_TIMEOUT_S = 2.0


class ZkError(DefiniteError):
    """The server answered with a ZooKeeper error code (``NoNode`` is -101...)."""

    code = "zookeeper"

    def __init__(self, err: int, path: str = "") -> None:
        super().__init__(f"zookeeper error {err} {path}".strip())
        self.err = err


class SessionExpired(ZkError):
    def __init__(self) -> None:
        super().__init__(Err.SESSION_EXPIRED)


class ConnectionLoss(ConnectionLost):
    """The connection broke with the request in flight."""


@dataclass
class NodeInfo:
    data: bytes
    stat: Stat


def _stat(r: Reader) -> Stat:
    return Stat(*STAT.unpack(r._take(STAT.size)))


class ZkClient:
    def __init__(self, hosts: Sequence[str] | str, *, timeout_ms: int = 10_000) -> None:
        self.hosts = [h.strip() for h in (hosts.split(",") if isinstance(hosts, str) else hosts)]
        self.timeout_ms = timeout_ms
        self.session_id = 0
        self.passwd = b"\0" * 16
        self.negotiated_ms = 0
        self.last_zxid = 0
        self.expired = False
        self._stream: trio.SocketStream | None = None
        self._pending: deque[tuple[int, trio.Event, list[Any]]] = deque()
        self._xids = itertools.count(1)
        self._hosts = itertools.cycle(range(len(self.hosts)))
        self._watches: dict[tuple[str, str], list[trio.Event]] = {}
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._connected = trio.Event()

    async def __aenter__(self) -> ZkClient:
        self._cm = self._run()
        await self._cm.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._cm.__aexit__(*exc)

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        first = await self._handshake()  # errors here raise plainly, not in a group
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._attach(*first)
            nursery.start_soon(self._pinger)
            try:
                yield
                if not self.expired and self._stream is not None:
                    with trio.move_on_after(2):
                        await self._call(Op.CLOSE, [])
            finally:
                nursery.cancel_scope.cancel()
                if self._stream is not None:
                    with trio.CancelScope(shield=True):
                        await self._stream.aclose()

    # -- connection -------------------------------------------------------------------

    async def _connect(self) -> None:
        self._attach(*await self._handshake())

    def _attach(self, stream: trio.SocketStream, reader: FrameReader, early: list[bytes]) -> None:
        self._stream = stream
        assert self._nursery is not None
        self._nursery.start_soon(self._reader, stream, reader, early)
        self._connected.set()

    async def _handshake(self) -> tuple[trio.SocketStream, FrameReader, list[bytes]]:
        last_exc: Exception | None = None
        for _ in range(len(self.hosts) * 3):
            host, port = parse_address(self.hosts[next(self._hosts)])
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    stream = await trio.open_tcp_stream(host, port)
                    await stream.send_all(encode_connect(self.last_zxid, self.timeout_ms,
                                                         self.session_id, self.passwd))
                    reader = FrameReader()
                    frames: list[bytes] = []
                    while not frames:
                        data = await stream.receive_some(65536)
                        if not data:
                            raise ConnectionLoss("server closed the connection")
                        frames = reader.feed(data)
            except (OSError, trio.TooSlowError, ConnectionLoss) as exc:
                last_exc = exc
                await trio.sleep(0.05)
                continue
            r = Reader(frames[0])
            r.int()
            timeout = r.int()
            sid = r.long()
            passwd = r.buffer() or b""
            if timeout <= 0:
                self.expired = True
                await stream.aclose()
                raise SessionExpired()
            self.session_id, self.passwd, self.negotiated_ms = sid, passwd, timeout
            return stream, reader, frames[1:]
        raise ConnectionLoss(f"cannot connect to any of {self.hosts}: {last_exc}")

    async def _reader(self, stream: trio.SocketStream, reader: FrameReader,
                      early: list[bytes]) -> None:
        try:
            for f in early:
                self._dispatch(f)
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    break
                for f in reader.feed(data):
                    self._dispatch(f)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        if self._stream is stream:
            self._stream = None
            self._connected = trio.Event()
            self._fail_pending()
            for events in self._watches.values():
                for ev in events:
                    ev.set()  # watches do not survive a reconnect (kazoo's behaviour)
            self._watches.clear()

    def _fail_pending(self) -> None:
        while self._pending:
            _, done, box = self._pending.popleft()
            box.append(ConnectionLoss("connection lost with the request in flight"))
            done.set()

    def _dispatch(self, frame: bytes) -> None:
        r = Reader(frame)
        xid, zxid, err = r.int(), r.long(), r.int()
        if xid == WATCH_XID:
            etype, _state, path = r.int(), r.int(), r.ustring() or ""
            kinds = ("data",) if etype in (1, 3) else ("child",) if etype == 4 else ("data", "child")
            for kind in kinds:
                for ev in self._watches.pop((kind, path), []):
                    ev.set()
            return
        if xid == PING_XID:
            return
        if zxid > 0:
            self.last_zxid = max(self.last_zxid, zxid)
        want, done, box = self._pending.popleft()
        assert want == xid, f"reply xid {xid} out of order (expected {want})"
        box.extend([err, r])
        done.set()

    async def _pinger(self) -> None:
        while True:
            await trio.sleep(max(0.05, self.negotiated_ms / 3000))
            stream = self._stream
            if stream is None:
                continue
            try:
                await stream.send_all(encode_request(PING_XID, Op.PING, []))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _call(self, op: int, body: list[Any]) -> Reader:
        if self.expired:
            raise SessionExpired()
        if self._stream is None:
            async with self._lock:
                if self._stream is None:
                    await self._connect()
        stream = self._stream
        assert stream is not None
        xid = next(self._xids)
        done = trio.Event()
        box: list[Any] = []
        self._pending.append((xid, done, box))
        try:
            await stream.send_all(encode_request(xid, op, body))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        await done.wait()
        if isinstance(box[0], Exception):
            raise box[0]
        err, r = box
        if err == Err.SESSION_EXPIRED:
            self.expired = True
            raise SessionExpired()
        if err != Err.OK:
            raise ZkError(err, body[0] if body and isinstance(body[0], str) else "")
        assert isinstance(r, Reader)
        return r

    def _watch(self, kind: str, path: str) -> trio.Event:
        ev = trio.Event()
        self._watches.setdefault((kind, path), []).append(ev)
        return ev

    # -- the API ----------------------------------------------------------------------

    async def create(self, path: str, data: bytes = b"", *, ephemeral: bool = False,
                     sequential: bool = False, acl: list[list[Any]] | None = None) -> str:
        flags = (1 if ephemeral else 0) | (2 if sequential else 0)
        r = await self._call(Op.CREATE, [path, data, acl or OPEN_ACL, flags])
        return r.ustring() or ""

    async def get(self, path: str, *, watch: bool = False) -> tuple[NodeInfo, trio.Event | None]:
        ev = self._watch("data", path) if watch else None
        r = await self._call(Op.GET_DATA, [path, watch])
        data = r.buffer() or b""
        return NodeInfo(data, _stat(r)), ev

    async def exists(self, path: str, *, watch: bool = False) -> tuple[Stat | None, trio.Event | None]:
        ev = self._watch("data", path) if watch else None
        try:
            r = await self._call(Op.EXISTS, [path, watch])
        except ZkError as exc:
            if exc.err == Err.NO_NODE:
                return None, ev
            raise
        return _stat(r), ev

    async def children(self, path: str, *, watch: bool = False) -> tuple[list[str], trio.Event | None]:
        ev = self._watch("child", path) if watch else None
        r = await self._call(Op.GET_CHILDREN, [path, watch])
        return [r.ustring() or "" for _ in range(r.count())], ev

    async def set(self, path: str, data: bytes, version: int = -1) -> Stat:
        return _stat(await self._call(Op.SET_DATA, [path, data, version]))

    async def delete(self, path: str, version: int = -1) -> None:
        await self._call(Op.DELETE, [path, version])

    async def sync(self, path: str = "/") -> None:
        await self._call(Op.SYNC, [path])

    async def ensure_path(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            try:
                await self.create("/" + "/".join(parts[:i]))
            except ZkError as exc:
                if exc.err != Err.NODE_EXISTS:
                    raise

