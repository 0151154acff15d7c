"""One framed connection over any trio byte stream, shared by endpoints and clients.

Writes are coalesced: a writer appends its frame to the connection's outbox; if nobody is
writing it becomes the flusher and sends everything queued (its own frame and any that
others append meanwhile) in as few ``send_all`` calls as possible. Only the flusher ever
touches ``send_all``, so trio's one-sender-at-a-time rule holds. A flush that fails or is
cancelled half way leaves the byte stream at an unknown frame boundary, so the connection
is closed; whatever was queued is lost (callers treat that as a lost connection).

Also here: reading the first frame of an inbound connection byte-exactly (so a raw stream
that follows a ``StreamOpen`` frame loses nothing), and the stream wrapper that replays
already-received bytes.
"""

from __future__ import annotations

import trio

from giants.core.envelope import LENGTH_PREFIX
from giants.core.errors import FrameTooLarge
from giants.core.transport.lean import LeanSocketStream

__all__ = [
    "TRANSPORT_ERRORS",
    "FramedConnection",
    "PrefixedStream",
    "read_first_frame",
    "close_quietly",
]

# What a broken or closed byte stream raises: the connection is gone, nothing more.
TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


async def close_quietly(stream: trio.abc.AsyncResource) -> None:
    """Close ``stream`` at once, even from a cancelled scope; never raises."""
    with trio.CancelScope(shield=True):
        try:
            await trio.aclose_forcefully(stream)
        except TRANSPORT_ERRORS:
            pass


class FramedConnection:
    """A byte stream carrying length-prefixed frames, with a coalescing writer."""

    __slots__ = ("_flushing", "_out", "_out_bytes", "_seen_sends", "closed", "label", "sends",
                 "stream")

    def __init__(self, stream: trio.abc.Stream, label: str) -> None:
        self.stream = stream
        self.label = label
        self.closed = False
        self.sends = 0  # completed send_all calls: the watchdog's measure of progress
        self._seen_sends = -1
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flushing = False

    def stalled(self) -> bool:
        """True if a flush is under way and no ``send_all`` finished since the previous
        call. Called every ``WRITE_TIMEOUT_S`` by a watchdog, which closes stalled
        connections: that makes the stuck ``send_all`` fail, so no writer waits forever
        and no per-write cancel scope is needed on the hot path."""
        stuck = self._flushing and self.sends == self._seen_sends
        self._seen_sends = self.sends
        return stuck

    @property
    def queued_bytes(self) -> int:
        """Bytes handed to ``write`` but not yet given to the stream."""
        return self._out_bytes

    async def write(self, data: bytes, *, gather: bool = False) -> None:
        """Queue ``data`` (whole frames) and flush unless another task is flushing.

        ``gather``: a writer that becomes the flusher first lets the other tasks already
        scheduled run (one shielded scheduler pass), so frames they write join this one
        in a single ``send_all`` -- for pipelined requests, whose writers wake together
        when a batch of replies arrives. Without it a lone frame goes out at once.

        Raises ``trio.ClosedResourceError`` if the connection is closed, and whatever
        ``send_all`` raises (``trio.BrokenResourceError``, ``Cancelled``) if this task
        was the flusher and the write failed; the connection is then closed.
        """
        if self.closed:
            raise trio.ClosedResourceError(f"{self.label}: connection closed")
        if self._flushing:
            self._queue(data)
            return
        self._flushing = True
        try:
            if gather:
                self._queue(data)
                await trio.lowlevel.cancel_shielded_checkpoint()
            else:
                await self.stream.send_all(data)  # the usual case: nobody else is writing
                self.sends += 1
            await self._send_queued()
        except BaseException:
            await self.aclose()
            raise
        finally:
            self._flushing = False

    def write_nowait(self, data: bytes, nursery: trio.Nursery) -> None:
        """Hand ``data`` (whole frames) to a ``LeanSocketStream`` connection without
        ever waiting: what the kernel does not take at once is queued, and a flusher
        task started in ``nursery`` sends it. So a task that writes to a peer -- a
        connection's reader stepping the host's process -- never stops reading its own
        connection because a peer is slow to read (two nodes each blocked writing to the
        other while neither reads would deadlock). A failed flush closes the connection
        (the flusher logs nothing and raises nothing: callers treat it as a lost
        connection). Raises ``trio.ClosedResourceError`` if closed and
        ``trio.BrokenResourceError`` if the kernel refused the bytes."""
        if self.closed:
            raise trio.ClosedResourceError(f"{self.label}: connection closed")
        if self._flushing:
            self._queue(data)
            return
        stream = self.stream
        assert isinstance(stream, LeanSocketStream)
        try:
            sent = stream.send_nowait(data)
        except trio.BrokenResourceError:
            self.closed = True
            self._out.clear()
            self._out_bytes = 0
            nursery.start_soon(close_quietly, stream)
            raise
        if sent == len(data):
            self.sends += 1
            return
        self._queue(data[sent:])
        self._flushing = True
        nursery.start_soon(self._flush_in_background)

    async def _flush_in_background(self) -> None:
        """The flusher task of ``write_nowait``: a broken connection just closes."""
        try:
            await self._send_queued()
        except TRANSPORT_ERRORS:
            await self.aclose()
        except BaseException:
            await self.aclose()
            raise
        finally:
            self._flushing = False

    def _queue(self, data: bytes) -> None:
        self._out.append(data)
        self._out_bytes += len(data)

    async def _send_queued(self) -> None:
        """Send what is queued, including what is queued meanwhile, in as few
        ``send_all`` calls as possible. Only the flusher calls it."""
        out = self._out
        while out:
            chunk = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._out_bytes = 0
            await self.stream.send_all(chunk)
            self.sends += 1

    async def aclose(self) -> None:
        """Close the connection; queued frames are discarded. Idempotent, never raises."""
        if self.closed:
            return
        self.closed = True
        self._out.clear()
        self._out_bytes = 0
        await close_quietly(self.stream)


async def read_first_frame(
    stream: trio.abc.ReceiveStream, max_frame_bytes: int
) -> tuple[bytes, bytes] | None:
    """Read exactly one frame: ``(payload, bytes received after it)``, or ``None`` on a
    clean EOF before any byte. Raises ``FrameTooLarge`` for an oversized prefix and
    ``trio.BrokenResourceError`` for EOF inside the frame."""
    buf = bytearray()
    need = LENGTH_PREFIX.size
    length = -1
    while True:
        if length < 0 and len(buf) >= LENGTH_PREFIX.size:
            (length,) = LENGTH_PREFIX.unpack_from(buf, 0)
            if length > max_frame_bytes:
                raise FrameTooLarge(f"frame of {length} bytes exceeds {max_frame_bytes}")
            need = LENGTH_PREFIX.size + length
        if len(buf) >= need and length >= 0:
            return bytes(buf[LENGTH_PREFIX.size : need]), bytes(buf[need:])
        data = await stream.receive_some()
        if not data:
            if not buf:
                return None
            raise trio.BrokenResourceError("connection closed inside the first frame")
        buf += data


class PrefixedStream(trio.abc.HalfCloseableStream):
    """A stream that first yields ``prefix`` (bytes already read off ``inner``), then
    whatever ``inner`` yields. Writes, EOF and close go straight to ``inner``."""

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            await trio.lowlevel.checkpoint()
            n = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self.inner, "send_eof", None)
        if send_eof is None:
            await self.inner.aclose()
        else:
            await send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()
