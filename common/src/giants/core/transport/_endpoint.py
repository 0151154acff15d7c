"""``StreamEndpoint``: the Endpoint contract over any trio byte streams.

The tcp and memory transports differ only in how a stream is opened (a ``Connector``)
and how inbound streams arrive (their ``serve`` hands each to ``handle_stream``); all the
behaviour of the contract (``giants.core.transport._base``) lives here:

* every connection, inbound or outbound, is read by one task that decodes frames and
  queues envelopes; a full queue stops that reader (backpressure, no silent drop). A
  host that registered a receiver (``set_receiver``) is handed each read's envelopes by
  the reader task itself instead, which saves a task switch per message (the host keeps
  its own queue for when the process is busy);
* an inbound connection whose first frame is ``StreamOpen`` is handed to the stream
  handler instead;
* a frame with a readable header but a bad body (unknown tag, wrong field types) is
  answered with ``ErrorReply.protocol`` on the same connection, which stays open; an
  oversized or unparseable frame closes that connection only. The malformed frame is not
  answered when it was itself a reply, so two endpoints can never trade complaints;
* ``send`` never blocks on a peer for long: connecting happens in a background task
  (frames wait in a bounded per-peer queue), and a watchdog closes any connection whose
  write has made no progress for ``WRITE_TIMEOUT_S`` (so the stuck write fails).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

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
from giants.core.errors import RemoteProtocolError
from giants.core.transport._base import (
    CONNECT_TIMEOUT_S,
    MAX_PENDING_WRITE_BYTES,
    PEER_QUEUE_FRAMES,
    RECEIVE_CHUNK_BYTES,
    RECEIVE_QUEUE_SIZE,
    RECONNECT_BACKOFF_MAX_S,
    RECONNECT_BACKOFF_MIN_S,
    WRITE_TIMEOUT_S,
    Connector,
    StreamHandler,
    StreamOpen,
)
from giants.core.transport._conn import (
    TRANSPORT_ERRORS,
    FramedConnection,
    PrefixedStream,
    close_quietly,
    read_first_frame,
)
from giants.core.transport.lean import LeanSocketStream

__all__ = ["StreamEndpoint", "Receiver"]

Receiver = Callable[[list[Envelope]], Awaitable[None]]
"""``await receiver(envs)``: take inbound envelopes, in arrival order, from a reader task."""

log = logging.getLogger("giants.core.transport")


class _PeerLink:
    """The outbound connection to one peer, and the frames waiting for it."""

    __slots__ = ("address", "backoff_s", "conn", "connecting", "peer", "retry_at", "waiting")

    def __init__(self, peer: str, address: str) -> None:
        self.peer = peer
        self.address = address
        self.conn: FramedConnection | None = None
        self.connecting = False
        self.waiting: list[bytes] = []
        self.retry_at = -float("inf")
        self.backoff_s = RECONNECT_BACKOFF_MIN_S


class StreamEndpoint:
    """An Endpoint (see ``_base.Endpoint``) whose connections are trio streams.

    Built by a transport's ``serve``; ``nursery`` runs its readers and connectors and is
    cancelled by ``serve`` on exit.
    """

    def __init__(
        self,
        node_id: str,
        address: str,
        *,
        nursery: trio.Nursery,
        connector: Connector,
        peers: Mapping[str, str] | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        stream_handler: StreamHandler | None = None,
        registry: MessageRegistry = DEFAULT_REGISTRY,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        self._node_id = node_id
        self._address = address
        self._nursery = nursery
        self._connector = connector
        self._max_frame_bytes = max_frame_bytes
        self._stream_handler = stream_handler
        self._registry = registry
        self._write_timeout_s = write_timeout_s
        self._inbox_in, self._inbox = trio.open_memory_channel[Envelope](RECEIVE_QUEUE_SIZE)
        self._links: dict[str, _PeerLink] = {}
        self._routes: dict[str, FramedConnection] = {}
        self._conns: set[FramedConnection] = set()
        self._receiver: Receiver | None = None
        self.set_peers(peers or {})
        nursery.start_soon(self._watchdog)

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def address(self) -> str:
        return self._address

    @property
    def peers(self) -> dict[str, str]:
        return {peer: link.address for peer, link in self._links.items()}

    # -- receiving ------------------------------------------------------------------

    def set_receiver(self, receiver: Receiver | None) -> None:
        """From now on hand inbound envelopes to ``receiver`` from the reader tasks (one
        call per read, in arrival order per connection) instead of queueing them for
        ``receive``; ``None`` goes back to queueing. Whatever was queued before stays
        queued: the caller takes it with ``receive_nowait``. ``receiver`` must not raise
        for a bad envelope (a reader task cannot answer for the process)."""
        self._receiver = receiver

    async def receive(self) -> Envelope:
        return await self._inbox.receive()

    def receive_nowait(self) -> Envelope:
        return self._inbox.receive_nowait()

    def __aiter__(self) -> StreamEndpoint:
        return self

    async def __anext__(self) -> Envelope:
        return await self._inbox.receive()

    async def handle_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one inbound connection until it closes. Never raises for bad input."""
        label = f"{self._node_id}<-inbound"
        try:
            first = await read_first_frame(stream, self._max_frame_bytes)
        except (RemoteProtocolError, *TRANSPORT_ERRORS) as exc:
            log.warning("%s: closing connection: %s", label, exc)
            await close_quietly(stream)
            return
        if first is None:
            await close_quietly(stream)
            return
        payload, rest = first
        conn = FramedConnection(stream, label)
        try:
            env = decode_envelope(payload, self._registry)
        except RemoteProtocolError as exc:
            env = None
            if not await self._on_bad_frame(conn, exc):
                return
        if env is not None and type(env.body) is StreamOpen:
            await self._serve_raw(env, PrefixedStream(stream, rest))
            return
        self._conns.add(conn)
        try:
            if env is not None:
                await self._deliver(conn, [env])
            await self._read_loop(conn, rest)
        finally:
            await self._forget(conn)

    async def _serve_raw(self, env: Envelope, stream: PrefixedStream) -> None:
        handler = self._stream_handler
        try:
            if handler is None:
                log.warning("%s: stream from %s refused: no stream handler",
                            self._node_id, env.source)
            else:
                await handler(env.body.header, stream)
        except Exception:  # the handler is user code: one bad stream must not stop us
            log.exception("%s: stream handler failed for %s", self._node_id, env.source)
        finally:
            await close_quietly(stream)

    async def _read_loop(self, conn: FramedConnection, rest: bytes) -> None:
        decoder = FrameDecoder(self._max_frame_bytes)
        data: bytes | bytearray = rest
        stream = conn.stream
        lean = stream if isinstance(stream, LeanSocketStream) else None
        try:
            while True:
                envs: list[Envelope] = []
                for payload in decoder.feed(data):
                    try:
                        envs.append(decode_envelope(payload, self._registry))
                    except RemoteProtocolError as exc:
                        if envs:  # what came before the bad frame goes first
                            await self._deliver(conn, envs)
                            envs = []
                        if not await self._on_bad_frame(conn, exc):
                            return
                if envs:
                    await self._deliver(conn, envs)
                if lean is not None and len(data) < RECEIVE_CHUNK_BYTES:
                    # the last read emptied the kernel buffer: wait before trying again
                    data = await lean.receive_when_ready(RECEIVE_CHUNK_BYTES)
                else:
                    data = await stream.receive_some(RECEIVE_CHUNK_BYTES)
                if not data:
                    return
        except RemoteProtocolError as exc:  # FrameTooLarge from the decoder
            log.warning("%s: closing connection: %s", conn.label, exc)
        except TRANSPORT_ERRORS as exc:
            if not conn.closed:
                log.info("%s: connection lost: %s", conn.label, exc)

    async def _deliver(self, conn: FramedConnection, envs: list[Envelope]) -> None:
        routes = self._routes
        for env in envs:
            routes[env.source] = conn
        receiver = self._receiver
        if receiver is not None:
            await receiver(envs)
            return
        inbox = self._inbox_in
        for env in envs:
            try:
                inbox.send_nowait(env)
            except trio.WouldBlock:
                await inbox.send(env)  # full: this reader waits (backpressure)

    async def _on_bad_frame(self, conn: FramedConnection, exc: RemoteProtocolError) -> bool:
        """Answer or drop a bad frame. Returns False if the connection was closed."""
        if not isinstance(exc, MalformedEnvelope):
            log.warning("%s: unparseable frame, closing connection: %s", conn.label, exc)
            await conn.aclose()
            return False
        log.warning("%s: bad message %d from %s: %s", conn.label, exc.msg_id, exc.source, exc)
        if exc.in_reply_to is None:
            complaint = Envelope(self._node_id, exc.source, 0, exc.msg_id,
                                 ErrorReply.protocol(str(exc)))
            await self._write(conn, frame(encode_envelope(complaint, self._registry)))
        return not conn.closed

    async def _forget(self, conn: FramedConnection) -> None:
        self._conns.discard(conn)
        for source in [s for s, c in self._routes.items() if c is conn]:
            del self._routes[source]
        for link in self._links.values():
            if link.conn is conn:
                link.conn = None
        await conn.aclose()

    # -- sending --------------------------------------------------------------------

    async def send(self, env: Envelope) -> None:
        await self._route(env.target, frame(encode_envelope(env, self._registry)))

    async def send_many(self, envs: Sequence[Envelope]) -> None:
        if len(envs) == 1:
            env = envs[0]
            await self._route(env.target, frame(encode_envelope(env, self._registry)))
            return
        batches: dict[str, list[bytes]] = {}
        for env in envs:
            batches.setdefault(env.target, []).append(frame(encode_envelope(env, self._registry)))
        for target, frames in batches.items():
            await self._route(target, b"".join(frames))

    async def _route(self, target: str, data: bytes) -> None:
        link = self._links.get(target)
        if link is not None:
            await self._send_to_peer(link, data)
            return
        conn = self._routes.get(target)
        if conn is None or conn.closed:
            log.info("%s: no route to %r, message dropped", self._node_id, target)
            return
        await self._write(conn, data)

    async def _send_to_peer(self, link: _PeerLink, data: bytes) -> None:
        conn = link.conn
        if conn is not None and not conn.closed:
            await self._write(conn, data)
            return
        if trio.current_time() < link.retry_at:
            log.debug("%s: peer %s unreachable, message dropped", self._node_id, link.peer)
            return
        if len(link.waiting) >= PEER_QUEUE_FRAMES:
            log.warning("%s: queue for peer %s full, message dropped", self._node_id, link.peer)
            return
        link.waiting.append(data)
        if not link.connecting:
            link.connecting = True
            self._nursery.start_soon(self._connect_peer, link)

    async def _connect_peer(self, link: _PeerLink) -> None:
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                stream = await self._connector(link.address)
        except (trio.TooSlowError, *TRANSPORT_ERRORS) as exc:
            log.info("%s: cannot connect to peer %s at %s: %s",
                     self._node_id, link.peer, link.address, exc)
            link.connecting = False
            link.waiting.clear()
            link.retry_at = trio.current_time() + link.backoff_s
            link.backoff_s = min(link.backoff_s * 2, RECONNECT_BACKOFF_MAX_S)
            return
        link.connecting = False
        if self._links.get(link.peer) is not link:  # the address book changed meanwhile
            await close_quietly(stream)
            return
        conn = FramedConnection(stream, f"{self._node_id}->{link.peer}")
        link.conn = conn
        link.backoff_s = RECONNECT_BACKOFF_MIN_S
        self._conns.add(conn)
        self._nursery.start_soon(self._run_outbound, conn)
        waiting, link.waiting = link.waiting, []
        if waiting:
            await self._write(conn, b"".join(waiting))

    async def _run_outbound(self, conn: FramedConnection) -> None:
        try:
            await self._read_loop(conn, b"")
        finally:
            await self._forget(conn)

    async def _write(self, conn: FramedConnection, data: bytes) -> None:
        """Best-effort write: failures close the connection and are logged, not raised.
        Over a lean (TCP) connection it never waits for the peer (``write_nowait``):
        the task writing may be a connection's reader stepping the process."""
        if conn.queued_bytes + len(data) > MAX_PENDING_WRITE_BYTES:
            log.warning("%s: %d bytes already queued, message dropped", conn.label,
                        conn.queued_bytes)
            return
        try:
            if isinstance(conn.stream, LeanSocketStream):
                conn.write_nowait(data, self._nursery)
            else:
                await conn.write(data)
        except TRANSPORT_ERRORS as exc:
            log.info("%s: send failed, message dropped: %s", conn.label, exc)

    async def _watchdog(self) -> None:
        """Close connections whose writes have made no progress for a write timeout."""
        while True:
            await trio.sleep(self._write_timeout_s)
            for conn in list(self._conns):
                if conn.stalled():
                    log.warning("%s: write stalled for %.1fs, connection closed", conn.label,
                                self._write_timeout_s)
                    await conn.aclose()

    # -- membership -----------------------------------------------------------------

    def set_peers(self, peers: Mapping[str, str]) -> None:
        old = self._links
        self._links = {}
        for peer, address in peers.items():
            link = old.get(peer)
            if link is None or link.address != address:
                link = _PeerLink(peer, address)
            self._links[peer] = link
        for peer, link in old.items():
            if self._links.get(peer) is not link and link.conn is not None:
                self._nursery.start_soon(link.conn.aclose)

    async def aclose(self) -> None:
        """Close every connection. ``serve`` calls this on exit."""
        for conn in list(self._conns):
            await conn.aclose()
        self._inbox_in.close()
