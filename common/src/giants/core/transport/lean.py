"""``LeanSocketStream``: a trio socket stream that tries the system call before waiting.

``trio.SocketStream`` makes every ``send_all`` and ``receive_some`` a full checkpoint: it
yields to the scheduler even when the kernel took the bytes (or had them) at once. A
request/response exchange then costs several passes of trio's run loop on each side,
each with its own ``epoll_wait``; in Python those passes are most of a loopback round
trip. This stream drives the (already non-blocking) stdlib socket under a trio stream
directly: ``send_all`` writes straight into the kernel buffer and waits for writability
only when it is full; ``receive_some`` returns what the kernel already holds and waits
for readability only when it holds nothing. Waiting goes through
``trio.lowlevel.wait_readable`` / ``wait_writable``, so cancellation and timeouts work as
usual, and ``aclose`` wakes a task waiting on the socket with ``ClosedResourceError``.

Fairness: an operation that did not have to wait does not yield, so a busy connection
could keep its task running; every ``FAIRNESS_BUDGET`` operations that did not wait, one
yields (a checkpoint), so other tasks -- and cancellation -- always get their turn.

Errors follow trio's stream contract: ``trio.BrokenResourceError`` (from the ``OSError``)
when the connection broke, ``trio.ClosedResourceError`` after ``aclose``.

Interrupting a receive: ``interrupt_receive()`` makes a ``receive_some`` that is waiting
raise ``ReceiveInterrupted`` at once, the stream staying open and losing nothing. It is
how a client whose requester reads its own reply gives up at a deadline without paying
for a cancel scope on every request (trio's cancel scopes cost several microseconds to
enter and leave). It uses ``trio.lowlevel.notify_closing``, which wakes the socket's
waiters with ``ClosedResourceError`` without closing anything; a writer woken that way
just waits again.

Used by the TCP transport for every connection, and by packages with their own wire
protocols (memcache) for theirs.
"""

from __future__ import annotations

import socket

import trio

__all__ = ["LeanSocketStream", "ReceiveInterrupted", "FAIRNESS_BUDGET", "DEFAULT_RECEIVE_BYTES"]

# Operations that complete without waiting before one yields to the scheduler anyway.
FAIRNESS_BUDGET = 32

DEFAULT_RECEIVE_BYTES = 64 * 1024


class ReceiveInterrupted(Exception):
    """``receive_some`` was woken by ``interrupt_receive``; nothing was read."""


class LeanSocketStream(trio.abc.HalfCloseableStream):
    """Wraps a connected ``trio.SocketStream`` (see the module docstring)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.socket = stream.socket  # what callers of ``SocketStream`` look at (getpeername)
        self._raw = socket.socket(fileno=stream.socket.fileno())
        self._closed = False
        self._receiving = False
        self._interrupted = False
        self._budget = FAIRNESS_BUDGET

    async def _spent(self) -> None:
        """Count one operation that did not wait; yield once the budget is used up."""
        self._budget -= 1
        if self._budget <= 0:
            self._budget = FAIRNESS_BUDGET
            await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream was closed")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        raw = self._raw
        view = memoryview(data)
        waited = False
        try:
            while view:
                try:
                    sent = raw.send(view)
                except BlockingIOError:
                    waited = True
                    try:
                        await trio.lowlevel.wait_writable(raw)
                    except trio.ClosedResourceError:
                        self._check_open()  # else woken by interrupt_receive: wait again
                    continue
                view = view[sent:]
        except OSError as exc:
            self._check_open()
            raise trio.BrokenResourceError(f"send failed: {exc}") from exc
        if not waited:
            await self._spent()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check_open()
        raw = self._raw
        size = DEFAULT_RECEIVE_BYTES if max_bytes is None else max_bytes
        try:
            try:
                data = raw.recv(size)
            except BlockingIOError:
                pass
            else:
                await self._spent()
                return data
        except OSError as exc:
            self._check_open()
            raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
        return await self.receive_when_ready(size)

    async def receive_when_ready(self, max_bytes: int | None = None) -> bytes:
        """``receive_some`` that waits for readability before its first try: for a
        caller that knows the kernel holds nothing yet (it just sent a request), one
        system call fewer."""
        self._check_open()
        raw = self._raw
        size = DEFAULT_RECEIVE_BYTES if max_bytes is None else max_bytes
        while True:
            self._receiving = True
            try:
                await trio.lowlevel.wait_readable(raw)
            except trio.ClosedResourceError:
                self._check_open()
                if self._interrupted:
                    raise ReceiveInterrupted() from None
                continue  # an interrupt meant for an earlier receive
            finally:
                self._receiving = False
                self._interrupted = False
            try:
                return raw.recv(size)
            except BlockingIOError:
                continue
            except OSError as exc:
                self._check_open()
                raise trio.BrokenResourceError(f"receive failed: {exc}") from exc

    def send_nowait(self, data: bytes | bytearray | memoryview) -> int:
        """Hand the kernel what it takes now, without waiting; returns how many bytes
        it took (possibly 0). Raises ``trio.BrokenResourceError`` if the connection
        broke, ``trio.ClosedResourceError`` after ``aclose``."""
        self._check_open()
        try:
            return self._raw.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"send failed: {exc}") from exc

    def interrupt_receive(self) -> None:
        """Make a ``receive_some`` / ``receive_when_ready`` now waiting raise ``ReceiveInterrupted``; no effect if
        none is waiting (see the module docstring)."""
        if self._receiving and not self._closed:
            self._interrupted = True
            trio.lowlevel.notify_closing(self._raw)

    def receive_nowait(self, max_bytes: int | None = None) -> bytes | None:
        """What the kernel already holds (``b""``: the peer closed), or ``None`` if it
        holds nothing yet. Never waits. Raises like ``receive_some``."""
        self._check_open()
        try:
            return self._raw.recv(DEFAULT_RECEIVE_BYTES if max_bytes is None else max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise trio.BrokenResourceError(f"receive failed: {exc}") from exc

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await trio.lowlevel.wait_writable(self._raw)

    async def send_eof(self) -> None:
        self._check_open()
        await self.stream.send_eof()

    async def aclose(self) -> None:
        """Close the connection. Idempotent; wakes any task waiting on it."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._raw.detach()  # the trio stream owns the descriptor and closes it
        await self.stream.aclose()
