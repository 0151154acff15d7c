"""Lean socket I/O for the trio drivers: try the system call first, ask trio only to wait.

Scaling Memcache at Facebook §3.1 counts microseconds per request; in Python the event
loop is most of them. ``trio.SocketStream`` yields to the scheduler on every send and
receive; a request/response exchange then costs several scheduler passes. ``RawConn``
uses the (already non-blocking) stdlib socket under a trio stream: ``send_all`` writes
straight into the kernel buffer and waits only when it is full; ``recv`` waits for
readability (one scheduler pass, and a cancellation point, so timeouts still work) and
then reads. Close with ``aclose`` (it detaches the stdlib object before the stream
closes the descriptor).
"""

from __future__ import annotations

import socket

import trio

__all__ = ["RawConn"]


class RawConn:
    """A trio ``SocketStream`` driven through its stdlib socket (see the docstring)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.raw = socket.socket(fileno=stream.socket.fileno())

    async def send_all(self, data: bytes) -> None:
        """Raises ``OSError`` if the peer is gone."""
        view = memoryview(data)
        raw = self.raw
        while view:
            try:
                sent = raw.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(raw)
                continue
            view = view[sent:]

    async def recv(self, max_bytes: int) -> bytes:
        """Wait for data and return it (``b""``: the peer closed). Raises ``OSError``."""
        raw = self.raw
        while True:
            await trio.lowlevel.wait_readable(raw)
            try:
                return raw.recv(max_bytes)
            except BlockingIOError:
                continue

    def recv_nowait(self, max_bytes: int) -> bytes | None:
        """Data already buffered in the kernel, or None if there is none yet."""
        try:
            return self.raw.recv(max_bytes)
        except BlockingIOError:
            return None

    async def aclose(self) -> None:
        self.raw.detach()
        with trio.CancelScope(shield=True):
            await self.stream.aclose()
