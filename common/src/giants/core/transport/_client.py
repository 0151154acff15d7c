"""``StreamClient``: the Client contract over any trio byte streams.

One connection per address, opened on first use and again on the first use after it
broke. Requests are pipelined: each gets a fresh ``msg_id``, its frame joins the
connection's coalescing writer, and each reply is handed to the request whose ``msg_id``
it names in ``in_reply_to``. A reply nobody waits for any more (its request timed out)
is dropped. When the connection breaks, every request in flight on it fails with
``ConnectionLost``; the next request reconnects.

Who reads the replies. Over a ``LeanSocketStream`` (TCP) the requesters read them
themselves, one at a time ("leader/follower"): a request whose reply has not come takes
the reader role if nobody has it, reads, hands each reply it finds to its request, and
when its own has come passes the role to a request still waiting. So a lone request
costs one task wake-up for its reply, not two (a reader task, then the requester). A
connection with no request in flight is read by nobody; the next request, if the last
read was over ``IDLE_PROBE_S`` ago, first takes what the kernel holds
(``receive_nowait``), so a connection the server closed meanwhile is noticed and replaced
before anything is written to it (within ``IDLE_PROBE_S`` of a reply, a close is as
unlikely to have arrived as it would be for a reader task to have seen it). Over other streams (the
memory transport) a reader task per connection does the reading.

Deadlines: connecting and waiting for one of the ``MAX_IN_FLIGHT_PER_CONNECTION`` slots
run under a cancel scope (rare), the rest of a request's deadline is kept by the
client's ``DeadlineTimer`` (see ``_deadlines``), which wakes a reading requester with
``LeanSocketStream.interrupt_receive``. A request whose deadline passes while its frame
is stuck in a write to a server that does not read closes that connection.
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
    encode_parts,
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
from giants.core.transport.lean import LeanSocketStream, ReceiveInterrupted

__all__ = ["StreamClient"]

log = logging.getLogger("giants.core.transport")

# A lean connection idle for longer than this is probed before the next request.
IDLE_PROBE_S = 0.001


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
        conn = self.conn
        self.error = Timeout(f"{conn.label}: no reply within {self.timeout_s}s")
        conn.pending.pop(self.msg_id, None)
        self.done.set()
        if conn.reader is self and conn.lean is not None:
            conn.lean.interrupt_receive()
        if self.writing:  # stuck flushing into a connection nobody reads: give it up
            await conn.aclose()


class _ClientConnection(FramedConnection):
    __slots__ = ("decoder", "in_flight", "last_read", "lean", "pending", "reader",
                 "slot_waiters")

    def __init__(self, stream: trio.abc.Stream, label: str, max_frame_bytes: int) -> None:
        super().__init__(stream, label)
        self.pending: dict[int, _Call] = {}
        # Requests holding one of the MAX_IN_FLIGHT_PER_CONNECTION slots, and those
        # waiting for one (a counter and a parking lot: cheaper than a Semaphore).
        self.in_flight = 0
        self.slot_waiters = trio.lowlevel.ParkingLot()
        self.decoder = FrameDecoder(max_frame_bytes)
        # Requesters read their own replies over a lean stream; ``reader`` is the one
        # reading now (see the module docstring).
        self.lean = stream if isinstance(stream, LeanSocketStream) else None
        self.reader: _Call | None = None
        self.last_read = -float("inf")  # trio time of the last read that brought data

    def fail_all(self, error: GiantsError) -> None:
        pending, self.pending = self.pending, {}
        for call in pending.values():
            call.error = error
            call.done.set()

    def pass_reading_on(self, leaving: _Call) -> None:
        """Wake one request other than ``leaving`` still waiting, to take the reader
        role."""
        for call in self.pending.values():
            if call is not leaving:
                call.done.set()  # woken without a reply or error: it reads next
                return


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
        elif (conn.lean is not None and conn.reader is None
              and deadline - timeout - conn.last_read > IDLE_PROBE_S
              and not await self._still_open(conn)):
            return await self.request(address, body, timeout=timeout)  # it was dropped
        if conn.in_flight >= MAX_IN_FLIGHT_PER_CONNECTION:  # rare: wait for a slot
            with trio.move_on_at(deadline) as scope:
                while conn.in_flight >= MAX_IN_FLIGHT_PER_CONNECTION:
                    await conn.slot_waiters.park()
            if scope.cancelled_caught:
                raise Timeout(f"{address}: no free request slot within {timeout}s") from None
        conn.in_flight += 1
        try:
            return await self._call(conn, address, body, deadline, timeout)
        finally:
            conn.in_flight -= 1
            if conn.slot_waiters:
                conn.slot_waiters.unpark()

    async def _call(self, conn: _ClientConnection, address: str, body: Any,
                    deadline: float, timeout: float) -> Any:
        msg_id = next(self._ids)
        data = frame(encode_parts(self._client_id, address, msg_id, None, body,
                                  self._registry))
        call = _Call(conn, msg_id, timeout)
        conn.pending[msg_id] = call
        self._deadlines.schedule(deadline, call)
        try:
            call.writing = True
            try:
                # pipelining: gather the frames written in this scheduler pass
                await conn.write(data, gather=len(conn.pending) > 1)
            except TRANSPORT_ERRORS as exc:
                raise call.error or ConnectionLost(f"{address}: {exc}") from None
            finally:
                call.writing = False
            if conn.lean is None:
                await call.done.wait()
            else:
                await self._await_reply(conn, call, address)
        finally:
            call.finished = True
            conn.pending.pop(msg_id, None)
        if call.error is not None:
            raise call.error
        reply = call.body
        if type(reply) is ErrorReply:
            raise reply.exception()
        return reply

    async def _await_reply(self, conn: _ClientConnection, call: _Call, address: str) -> None:
        """Wait for ``call``'s reply over a lean stream, reading when nobody else is.
        Whoever leaves while nobody reads (done, timed out, cancelled) wakes a request
        still waiting, so waiting requests are never left without a reader."""
        try:
            while call.body is None and call.error is None:
                if conn.reader is not None:
                    await call.done.wait()
                    if call.body is None and call.error is None:
                        call.done = trio.Event()  # woken to take over reading
                    continue
                conn.reader = call
                try:
                    await self._read_for(conn, call, address)
                finally:
                    conn.reader = None
        finally:
            if conn.reader is None:
                conn.pass_reading_on(call)

    async def _read_for(self, conn: _ClientConnection, call: _Call, address: str) -> None:
        """Read replies until ``call`` has one (or an error)."""
        lean = conn.lean
        assert lean is not None
        try:
            while call.body is None and call.error is None:
                try:
                    data = await lean.receive_when_ready(RECEIVE_CHUNK_BYTES)
                except ReceiveInterrupted:
                    continue  # our deadline passed: expire() set the error
                if not data:
                    raise trio.BrokenResourceError("connection closed by the server")
                conn.last_read = trio.current_time()
                for payload in conn.decoder.feed(data):
                    self._on_reply(conn, payload)
        except (RemoteProtocolError, *TRANSPORT_ERRORS) as exc:
            self._lost(conn, address, exc)
            await conn.aclose()

    async def _still_open(self, conn: _ClientConnection) -> bool:
        """Take what an idle connection's kernel buffer holds (late replies; an EOF if
        the server closed it). False if the connection is gone and was forgotten.
        Does not yield unless it has to close the connection."""
        lean = conn.lean
        assert lean is not None
        try:
            while (data := lean.receive_nowait(RECEIVE_CHUNK_BYTES)) is not None:
                if not data:
                    raise trio.BrokenResourceError("connection closed by the server")
                for payload in conn.decoder.feed(data):
                    self._on_reply(conn, payload)
        except (RemoteProtocolError, *TRANSPORT_ERRORS) as exc:
            self._lost(conn, conn.label, exc)
            await conn.aclose()
            return False
        return True

    def _lost(self, conn: _ClientConnection, address: str, exc: BaseException) -> None:
        why = (f"bad frame from server: {exc}" if isinstance(exc, RemoteProtocolError)
               else f"connection lost: {exc}")
        if isinstance(exc, RemoteProtocolError):
            log.warning("%s: %s", conn.label, why)
        for addr, c in list(self._conns.items()):
            if c is conn:
                del self._conns[addr]
        conn.fail_all(ConnectionLost(f"{address}: {why}"))

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
            conn = _ClientConnection(stream, f"{self._client_id}->{address}",
                                     self._max_frame_bytes)
            self._conns[address] = conn
            if conn.lean is None:
                self._nursery.start_soon(self._read_replies, conn, address)
            return conn

    async def _read_replies(self, conn: _ClientConnection, address: str) -> None:
        """The reader task of a connection over a stream that is not lean."""
        decoder = conn.decoder
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
