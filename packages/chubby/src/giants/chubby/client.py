"""The Chubby client library for trio programs (Burrows, OSDI 2006, §2.6 "API").

``ChubbyClient`` hosts the sans-I/O ``ClientCore`` (session, KeepAlives, local lease,
jeopardy and grace period, cache with invalidation): a ticker task drives its clock and
every request it wants sent runs as its own task over one ``tcp.Client``. Calls are
handle-based, as in the paper::

    async with ChubbyClient(["127.0.0.1:7300", ...], user="alice") as c:
        h = await c.open("/ls/cell/service/leader", "rwl", create="file")
        seq = await c.acquire(h)                    # a sequencer: [path, "x", generation]
        await c.write(h, b"me")
        data, stat = await c.read(h)                # cached until invalidated

Errors: ``Rejected`` (with ``detail["reason"]``: ``bad_path``, ``permission``,
``bad_handle``, ``session_expired``, ...) and ``NotFound`` are definite; ``Timeout``
means the call may or may not have happened. Events (``modified``, ``child``, ``lock``,
``conflict``, ``invalid``, ``failover``, ``jeopardy``, ``safe``, ``expired``) arrive on
``events()``.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import trio

from giants.chubby._session import ClientCore, ClientOptions
from giants.core.envelope import ErrorReply
from giants.core.errors import (
    DefiniteError,
    GiantsError,
    IndefiniteError,
    LocalProtocolError,
    RemoteProtocolError,
    Unavailable,
)
from giants.core.transport import tcp

__all__ = ["ChubbyClient", "ClientOptions"]

TICK_S = 0.01
EVENT_BUFFER = 1024


class ChubbyClient:
    """A Chubby session from a trio program. See the module docstring."""

    def __init__(self, endpoints: list[str], *, user: str = "anonymous",
                 options: ClientOptions | None = None, connect_timeout_s: float = 10.0,
                 adopt: tuple[int, int] | None = None, transport: Any = None) -> None:
        """``transport``: a ``giants.core.transport`` client to use instead of a new
        ``tcp.Client`` (driver tests pass a ``memory.Client``); it is entered and left
        with this client."""
        if not endpoints:
            raise LocalProtocolError("ChubbyClient needs at least one replica endpoint")
        self.core = ClientCore(list(endpoints), user=user, nonce=uuid.uuid4().hex,
                               options=options, adopt=adopt)
        self.connect_timeout_s = connect_timeout_s
        self._adopted = adopt is not None     # someone else's session: leave it running
        self._client = transport or tcp.Client(f"chubby-client-{uuid.uuid4().hex[:10]}")
        self._waiters: dict[int, trio.Event] = {}
        self._results: dict[int, tuple[GiantsError | None, Any]] = {}
        self._events_send, self._events_recv = trio.open_memory_channel[list[Any]](EVENT_BUFFER)
        self._state_changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._nursery_cm: Any = None
        self.closed = False

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> ChubbyClient:
        await self._client.__aenter__()
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self.core.start(trio.current_time())
        self._after()
        self._nursery.start_soon(self._ticker)
        with trio.move_on_after(self.connect_timeout_s):
            while self.core.state not in ("safe", "expired"):
                await self._wait_state()
        if self.core.state != "safe":
            await self.__aexit__(None, None, None)
            raise Unavailable(f"no Chubby session within {self.connect_timeout_s}s "
                              f"(state {self.core.state})")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.closed:
            return
        self.closed = True
        if self.core.state == "safe" and exc[0] is None and not self._adopted:
            with trio.move_on_after(2.0):
                await self._call("end_session", [])
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        await self._nursery_cm.__aexit__(None, None, None)
        await self._client.__aexit__(None, None, None)

    @property
    def session(self) -> int:
        return int(self.core.session)

    @property
    def state(self) -> str:
        return str(self.core.state)

    # -- the API (§2.6) ---------------------------------------------------------------

    async def open(self, path: str, mode: str = "r", *, create: str = "",
                   events: tuple[str, ...] = (), acls: list[str] | None = None) -> int:
        """A handle on ``path``. ``mode``: letters of ``r`` (read), ``w`` (write), ``l``
        (lock); ``create``: ``""`` (must exist), ``file``, ``dir``, ``ephemeral``,
        ``ephemeral-dir``; ``events``: what to be told about; ``acls``: [read, write,
        change] ACL names for a new node (default: the parent's)."""
        hid, _stat = await self._call("open", [path, mode, create, list(events), acls])
        return int(hid)

    async def close(self, handle: int) -> None:
        await self._call("close", [handle])

    async def read(self, handle: int) -> tuple[bytes, dict[str, Any]]:
        """GetContentsAndStat: contents and metadata (lock state not included)."""
        data, stat = await self._call("read", [handle])
        return bytes(data), dict(stat)

    async def stat(self, handle: int) -> dict[str, Any]:
        return dict(await self._call("stat", [handle]))

    async def lookup(self, path: str) -> dict[str, Any] | None:
        """The node's metadata, or None if it does not exist (negatively cached)."""
        out = await self._call("lookup", [path])
        return None if out is None else dict(out)

    async def readdir(self, handle: int) -> list[str]:
        return list(await self._call("readdir", [handle]))

    async def write(self, handle: int, data: bytes, *, if_generation: int = -1) -> dict[str, Any]:
        """SetContents (only if the content generation is ``if_generation``, when >= 0)."""
        return dict(await self._call("write", [handle, bytes(data), if_generation]))

    async def delete(self, handle: int) -> None:
        await self._call("delete", [handle])

    async def set_acl(self, handle: int, acls: list[str]) -> None:
        await self._call("set_acl", [handle, list(acls)])

    async def acquire(self, handle: int, mode: str = "x") -> list[Any]:
        """Block until the lock is ours; returns the sequencer."""
        _ok, seqr = await self._call("acquire", [handle, mode])
        return list(seqr)

    async def try_acquire(self, handle: int, mode: str = "x") -> list[Any] | None:
        ok, seqr = await self._call("try_acquire", [handle, mode])
        return list(seqr) if ok else None

    async def release(self, handle: int) -> None:
        await self._call("release", [handle])

    async def sequencer(self, handle: int) -> list[Any]:
        return list(await self._call("sequencer", [handle]))

    async def check_sequencer(self, sequencer: list[Any]) -> bool:
        return bool(await self._call("check_sequencer", [list(sequencer)]))

    def events(self) -> trio.MemoryReceiveChannel[list[Any]]:
        """``[kind, path, detail, handle]`` as they arrive."""
        return self._events_recv

    # -- machinery --------------------------------------------------------------------

    async def _call(self, op: str, args: list[Any]) -> Any:
        if self._nursery is None:
            raise LocalProtocolError("use ChubbyClient in 'async with'")
        op_id = self.core.submit(trio.current_time(), op, args)
        event = self._waiters[op_id] = trio.Event()
        self._after()
        try:
            await event.wait()
        except trio.Cancelled:
            self._waiters.pop(op_id, None)
            if op_id not in self._results:
                self.core.abandon(trio.current_time(), op_id)
            self._results.pop(op_id, None)
            raise
        err, value = self._results.pop(op_id)
        if err is not None:
            raise err
        return value

    async def _wait_state(self) -> None:
        self._state_changed = trio.Event()
        await self._state_changed.wait()

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(TICK_S)
            self.core.tick(trio.current_time())
            self._after()

    def _after(self) -> None:
        """Carry out what the core wants: complete calls, pass events on, send."""
        assert self._nursery is not None
        for op_id, err, value in self.core.take_completed():
            self._results[op_id] = (err, value)
            waiter = self._waiters.pop(op_id, None)
            if waiter is not None:
                waiter.set()
        for ev in self.core.take_events():
            self._state_changed.set()
            try:
                self._events_send.send_nowait(ev)
            except trio.WouldBlock:
                pass        # nobody is reading events; the oldest undelivered are dropped
        for token, target, body, timeout in self.core.take_outbox():
            self._nursery.start_soon(self._request, token, target, body, timeout)

    async def _request(self, token: int, target: str, body: Any, timeout: float) -> None:
        try:
            reply = await self._client.request(target, body, timeout=max(
                0.01, min(timeout, 1e6) if math.isfinite(timeout) else 1e6))
        except DefiniteError as exc:
            reply = ErrorReply.definite(exc)
        except RemoteProtocolError as exc:
            reply = ErrorReply.protocol(str(exc))
        except IndefiniteError:
            return          # the core times the request out by itself
        self.core.on_reply(trio.current_time(), token, reply)
        self._after()
