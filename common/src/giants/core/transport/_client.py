"""``StreamClient``: the Client contract over any trio byte streams.

One connection per address, opened on first use and again on the first use after it
broke. Requests are pipelined: each gets a fresh ``msg_id``, its frame joins the
connection's coalescing writer, and the connection's reader task hands each reply to the
request whose ``msg_id`` it names in ``in_reply_to``. A reply nobody waits for any more
(its request timed out) is dropped. When the connection breaks, every request in flight
on it fails with ``ConnectionLost``; the next request reconnects.

Deadlines: connecting and waiting for one of the ``MAX_IN_FLIGHT_PER_CONNECTION`` slots
run under a cancel scope (rare), the rest of a request's deadline is kept by the
client's ``DeadlineTimer`` (see ``_deadlines``). A request whose deadline passes while
its frame is stuck in a write to a server that does not read closes that connection.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from giants.core.codec import DEFAULT_REGISTRY, MessageRegistry
from giants.core.envelope import (
    DEFAULT_MAX_FRAME_BYTES,
    Envelope,
    ErrorReply,
    FrameDecoder,
    MalformedEnvelope,
    decode_envelope,
    encode_envelope,
    frame,
)
from giants.core.errors import (
    ConnectionLost,
    GiantsError,
    LocalProtocolError,
    RemoteProtocolError,
    Timeout,
)
from giants.core.transport._base import (
    CONNECT_TIMEOUT_S,
    MAX_IN_FLIGHT_PER_CONNECTION,
    RECEIVE_CHUNK_BYTES,
    Connector,
    StreamOpen,
)
from giants.core.transport._conn import TRANSPORT_ERRORS, FramedConnection, close_quietly
from giants.core.transport._deadlines import DeadlineTimer

__all__ = ["StreamClient"]

log = logging.getLogger("giants.core.transport")


class _Call:
    """One request waiting for its reply (or its deadline, see ``_deadlines``)."""

    __slots__ = ("body", "conn", "done", "error", "finished", "msg_id", "timeout_s", "writing")

    def __init__(self, conn: _ClientConnection, msg_id: int, timeout_s: float) -> None:
        self.conn = conn
        self.msg_id = msg_id
        self.timeout_s = timeout_s
        self.done = trio.Event()
        self.body: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.writing = False

    async def expire(self) -> None:
        self.error = Timeout(f"{self.conn.label}: no reply within {self.timeout_s}s")
        self.conn.pending.pop(self.msg_id, None)
        self.done.set()
        if self.writing:  # stuck flushing into a connection nobody reads: give it up
            await self.conn.aclose()


class _ClientConnection(FramedConnection):
    __slots__ = ("pending", "slots")

    def __init__(self, stream: trio.abc.Stream, label: str) -> None:
        super().__init__(stream, label)
        self.pending: dict[int, _Call] = {}
        self.slots = trio.Semaphore(MAX_IN_FLIGHT_PER_CONNECTION)

    def fail_all(self, error: GiantsError) -> None:
        pending, self.pending = self.pending, {}
        for call in pending.values():
            call.error = error
            call.done.set()


class StreamClient:
    """A Client (see ``_base.Client``) whose connections are trio streams.

    Use as ``async with``: the context runs the reader tasks and closes every
    connection on exit.
    """

    def __init__(
        self,
        client_id: str,
        *,
        connector: Connector,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        registry: MessageRegistry = DEFAULT_REGISTRY,
    ) -> None:
        self._client_id = client_id
        self._connector = connector
        self._max_frame_bytes = max_frame_bytes
        self._registry = registry
        self._ids = itertools.count(1)
        self._conns: dict[str, _ClientConnection] = {}
        self._connect_locks: dict[str, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None
        self._nursery_cm: Any = None
        self._deadlines = DeadlineTimer()

    @property
    def client_id(self) -> str:
        return self._client_id

    async def __aenter__(self) -> StreamClient:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._nursery.start_soon(self._deadlines.run)
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        for conn in list(self._conns.values()):
            conn.fail_all(ConnectionLost("client closed"))
            await conn.aclose()
        self._conns.clear()
        nursery_cm, self._nursery_cm, self._nursery = self._nursery_cm, None, None
        body = exc_info[1] if len(exc_info) > 1 else None
        try:
            return await nursery_cm.__aexit__(*exc_info)  # type: ignore[no-any-return]
        except BaseExceptionGroup as group:
            # The client's own tasks were cancelled and end quietly, so a group holding
            # only the exception raised in the ``async with`` body is that exception:
            # callers see the error the body raised (a Timeout, a NotLeader), unwrapped.
            if body is not None and group.exceptions == (body,):
                raise body from None
            raise

    # -- requests -------------------------------------------------------------------

    async def request(self, address: str, body: Any, *, timeout: float) -> Any:
        deadline = trio.current_time() + timeout
        conn = self._conns.get(address)
        if conn is None or conn.closed:  # connecting is bounded by the request's deadline
            with trio.move_on_at(deadline) as scope:
                conn = await self._connection(address)
            if scope.cancelled_caught or conn is None:
                raise Timeout(f"could not connect to {address} within {timeout}s")
        slots = conn.slots
        try:
            slots.acquire_nowait()  # the common case: no scheduler round trip
        except trio.WouldBlock:
            with trio.move_on_at(deadline) as scope:
                await slots.acquire()
            if scope.cancelled_caught:
                raise Timeout(f"{address}: no free request slot within {timeout}s") from None
        try:
            return await self._call(conn, address, body, deadline, timeout)
        finally:
            slots.release()

    async def _call(self, conn: _ClientConnection, address: str, body: Any,
                    deadline: float, timeout: float) -> Any:
        msg_id = next(self._ids)
        data = frame(encode_envelope(
            Envelope(self._client_id, address, msg_id, None, body), self._registry))
        call = _Call(conn, msg_id, timeout)
        conn.pending[msg_id] = call
        self._deadlines.schedule(deadline, call)
        try:
            call.writing = True
            try:
                await conn.write(data)
            except TRANSPORT_ERRORS as exc:
                raise call.error or ConnectionLost(f"{address}: {exc}") from None
            finally:
                call.writing = False
            await call.done.wait()
        finally:
            call.finished = True
            conn.pending.pop(msg_id, None)
        if call.error is not None:
            raise call.error
        reply = call.body
        if type(reply) is ErrorReply:
            raise reply.exception()
        return reply

    async def send(self, address: str, body: Any) -> None:
        data = frame(encode_envelope(
            Envelope(self._client_id, address, next(self._ids), None, body), self._registry))
        conn = await self._connection(address)
        try:
            await conn.write(data)
        except TRANSPORT_ERRORS as exc:
            raise ConnectionLost(f"{address}: {exc}") from None

    @asynccontextmanager
    async def open_stream(self, address: str, header: Any) -> AsyncIterator[trio.abc.Stream]:
        env = Envelope(self._client_id, address, next(self._ids), None, StreamOpen(header))
        data = frame(encode_envelope(env, self._registry))
        stream = await self._connect(address)
        try:
            try:
                await stream.send_all(data)
            except TRANSPORT_ERRORS as exc:
                raise ConnectionLost(f"{address}: {exc}") from None
            yield stream
        finally:
            await close_quietly(stream)

    # -- connections ----------------------------------------------------------------

    async def _connect(self, address: str) -> trio.abc.Stream:
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                return await self._connector(address)
        except (trio.TooSlowError, *TRANSPORT_ERRORS) as exc:
            raise ConnectionLost(f"cannot connect to {address}: {exc}") from None

    async def _connection(self, address: str) -> _ClientConnection:
        conn = self._conns.get(address)
        if conn is not None and not conn.closed:
            return conn
        if self._nursery is None:
            raise LocalProtocolError("use the client as 'async with'")
        lock = self._connect_locks.setdefault(address, trio.Lock())
        async with lock:
            conn = self._conns.get(address)
            if conn is not None and not conn.closed:
                return conn
            stream = await self._connect(address)
            conn = _ClientConnection(stream, f"{self._client_id}->{address}")
            self._conns[address] = conn
            self._nursery.start_soon(self._read_replies, conn, address)
            return conn

    async def _read_replies(self, conn: _ClientConnection, address: str) -> None:
        decoder = FrameDecoder(self._max_frame_bytes)
        why = "connection closed by the server"
        try:
            while True:
                data = await conn.stream.receive_some(RECEIVE_CHUNK_BYTES)
                if not data:
                    break
                for payload in decoder.feed(data):
                    self._on_reply(conn, payload)
        except RemoteProtocolError as exc:  # FrameTooLarge or an unparseable frame
            why = f"bad frame from server: {exc}"
            log.warning("%s: %s", conn.label, why)
        except TRANSPORT_ERRORS as exc:
            why = f"connection lost: {exc}"
        finally:
            if self._conns.get(address) is conn:
                del self._conns[address]
            conn.fail_all(ConnectionLost(f"{address}: {why}"))
            await conn.aclose()

    def _on_reply(self, conn: _ClientConnection, payload: bytes) -> None:
        try:
            env = decode_envelope(payload, self._registry)
        except MalformedEnvelope as exc:
            call = conn.pending.pop(exc.in_reply_to, None) if exc.in_reply_to else None
            if call is None:
                raise
            call.error = RemoteProtocolError(f"bad reply from server: {exc}")
            call.done.set()
            return
        if env.in_reply_to is None:
            log.info("%s: unsolicited %s dropped", conn.label, type(env.body).__name__)
            return
        call = conn.pending.pop(env.in_reply_to, None)
        if call is None:
            log.debug("%s: late reply %d dropped", conn.label, env.in_reply_to)
            return
        call.body = env.body
        call.done.set()
