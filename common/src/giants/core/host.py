"""The trio host: runs one sans-I/O process (``giants.core.process``) as a real node.

DESIGN.md "Three layers", layer 2 (the driver). ``run_process`` loads the process's
``Durable`` from a ``DurableStore``, builds it with its factory, and then serves forever:

* a **ticker** calls ``process.tick(io)`` every ``tick_s`` seconds (missed ticks are
  skipped, not replayed in a burst);
* **receiving**: the endpoint's reader tasks hand over what each read brought
  (``Endpoint.set_receiver``; an endpoint without it is read by a receive loop that does
  the same). If the process is idle and nothing older is waiting, the reader task steps
  it at once -- ``process.receive`` for each envelope, then one flush -- with no task
  switch between the socket and the process. If the process is busy (a flush is waiting
  for the disk, a tick is running), the envelopes join the host's **backlog**, and
  whoever holds the process drains the backlog, up to ``MAX_BATCH`` envelopes per flush,
  before letting go -- *group commit*: the requests that arrived during one durable write
  share the next. So the process is never left idle with a backlog, and envelopes are
  stepped in arrival order. A backlog of ``RECEIVE_QUEUE_SIZE`` stops the readers that
  add to it (backpressure) until it drains.

A flush is in **contract order**: ``await store.apply(all persists)`` (one atomic,
durable write) and only then the sends, with ``endpoint.send_many``. Process calls and
flushes are serialized by one lock, so the process never runs twice at once and never
runs while an earlier call's effects are half carried out.

``io.now`` is ``trio.current_time()`` (seconds, so tests can drive it with trio's
``MockClock``); ``io.rng`` is ``random.Random(seed)``, or seeded from the node id;
message ids come from a per-host counter starting at 1.

Errors: an exception from the process is a bug and propagates out of ``run_process``
(the node dies loudly), whichever task was stepping the process when it was raised.
The one exception is ``RemoteProtocolError`` raised by ``receive`` for a malformed
request: it is logged and answered with ``ErrorReply.protocol``; the effects the process
recorded before raising are still carried out, so its memory and its disk agree.

``run_process`` does not close the endpoint or the store; whoever opened them does.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import trio

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import RemoteProtocolError
from giants.core.process import Durable, Io, PersistOp, Process, ProcessFactory
from giants.core.trace import TraceWriter, summarize
from giants.core.transport import Endpoint
from giants.core.transport._base import RECEIVE_QUEUE_SIZE

__all__ = ["DurableStore", "MemoryDurableStore", "run_process", "MAX_BATCH"]

log = logging.getLogger("giants.core.host")

# Envelopes handled per group commit. Bounds one durable write and how long the process
# lock is held, so ticks are not starved while a flood of requests is queued.
MAX_BATCH = 256

# Trace fields the TraceWriter itself owns; a process trace field of the same name is
# renamed with a leading underscore instead of clashing.
_RESERVED_TRACE_FIELDS = frozenset({"seq", "t", "node", "kind"})


class DurableStore(Protocol):
    """Where a node's ``Durable`` lives (``giants.core.storage.SqlDurableStore`` on disk,
    ``MemoryDurableStore`` in tests)."""

    async def load(self) -> Durable:
        """The durable state as last applied (empty on first boot)."""
        ...

    async def apply(self, ops: Sequence[PersistOp]) -> None:
        """Apply ``ops`` in order, atomically; durable when this returns."""
        ...

    async def close(self) -> None:
        """Release the store; no call may follow."""
        ...


class MemoryDurableStore:
    """A ``DurableStore`` in memory, for tests: survives a process restart within one
    test (build a new process from the same store), not a Python exit.

    ``applies`` counts ``apply`` calls (one per group commit that had persists).
    """

    def __init__(self, durable: Durable | None = None) -> None:
        self._durable = durable if durable is not None else Durable()
        self.applies = 0
        self.closed = False

    async def load(self) -> Durable:
        await trio.lowlevel.checkpoint()
        return self._durable.copy()

    async def apply(self, ops: Sequence[PersistOp]) -> None:
        await trio.lowlevel.checkpoint()
        for op in ops:
            self._durable.apply(op)
        self.applies += 1

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()
        self.closed = True

    def snapshot(self) -> Durable:
        """A copy of what is durable now."""
        return self._durable.copy()


class _Host:
    """The state of one running process: the process, its lock, its backlog, its ids."""

    def __init__(self, process: Process, node_id: str, endpoint: Endpoint,
                 store: DurableStore, rng: random.Random, trace: TraceWriter | None) -> None:
        self.process = process
        self.node_id = node_id
        self.endpoint = endpoint
        self.store = store
        self.rng = rng
        self.trace = trace
        self.lock = trio.Lock()
        self.backlog: deque[Envelope] = deque()
        self.failure: BaseException | None = None
        self.failed = trio.Event()
        self._room = trio.Event()
        self._ids = itertools.count(1)

    def new_io(self) -> Io:
        return Io(node_id=self.node_id, now=trio.current_time(), rng=self.rng,
                  next_msg_id=self._ids.__next__)

    async def flush(self, io: Io) -> None:
        """Persist, then send: the contract order."""
        if io.persists:
            await self.store.apply(io.persists)
        trace = self.trace
        if trace is not None:
            now = trio.current_time()
            for ev in io.traces:
                fields = {(f"_{k}" if k in _RESERVED_TRACE_FIELDS else k): v
                          for k, v in ev.fields.items()}
                trace.event(now, ev.node, "state", what=ev.kind, **fields)
            for env in io.sends:
                trace.event(now, self.node_id, "send", src=env.source, dst=env.target,
                            id=env.msg_id, reply_to=env.in_reply_to,
                            msg=type(env.body).__name__, body=summarize(env.body))
        if io.sends:
            await self.endpoint.send_many(io.sends)

    async def ticker(self, tick_s: float) -> None:
        next_at = trio.current_time() + tick_s
        while True:
            await trio.sleep_until(next_at)
            await self._acquire()
            try:
                io = self.new_io()
                self.process.tick(io)
                await self.flush(io)
                await self._drain()
            finally:
                self.lock.release()
            next_at = max(next_at + tick_s, trio.current_time())

    async def deliver(self, envs: list[Envelope]) -> None:
        """Take envelopes from a reader task (see the module docstring): step the process
        with them now if it is idle and nothing older waits, else add them to the
        backlog for whoever holds the process."""
        if self.failure is not None:
            return  # the node is going down; run_process raises the failure
        if self.backlog or self.lock.locked():
            self.backlog.extend(envs)
            while len(self.backlog) >= RECEIVE_QUEUE_SIZE and self.failure is None:
                await self._room.wait()
            return
        self.lock.acquire_nowait()
        try:
            await self._step(envs)
            await self._drain()
        except Exception as exc:  # a bug in the process, or the store failed
            self._fail(exc)
        finally:
            self.lock.release()

    async def _drain(self) -> None:
        """Step the process with the backlog until it is empty. Called with the lock
        held, and last thing before it is released."""
        backlog = self.backlog
        while backlog:
            batch = [backlog.popleft() for _ in range(min(len(backlog), MAX_BATCH))]
            room, self._room = self._room, trio.Event()
            room.set()
            await self._step(batch)

    async def _step(self, envs: list[Envelope]) -> None:
        io = self.new_io()
        for env in envs:
            self._receive_one(io, env)
        await self.flush(io)

    def _fail(self, exc: BaseException) -> None:
        self.failure = exc
        self.failed.set()
        self._room.set()

    async def receive_loop(self) -> None:
        """For an endpoint without ``set_receiver``: read it and deliver."""
        endpoint = self.endpoint
        while True:
            batch = [await endpoint.receive()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(endpoint.receive_nowait())
                except trio.WouldBlock:
                    break
            await self.deliver(batch)

    async def watch_failure(self) -> None:
        await self.failed.wait()
        assert self.failure is not None
        raise self.failure

    async def _acquire(self) -> None:
        """Take the process lock; uncontended (the usual case) without a yield."""
        try:
            self.lock.acquire_nowait()
        except trio.WouldBlock:
            await self.lock.acquire()

    def _receive_one(self, io: Io, env: Envelope) -> None:
        if self.trace is not None:
            self.trace.event(io.now, self.node_id, "recv", src=env.source, dst=env.target,
                             id=env.msg_id, reply_to=env.in_reply_to,
                             msg=type(env.body).__name__)
        try:
            self.process.receive(io, env)
        except RemoteProtocolError as exc:
            log.warning("%s: bad %s from %s: %s", self.node_id, type(env.body).__name__,
                        env.source, exc)
            if env.in_reply_to is None:
                io.reply(env, ErrorReply.protocol(str(exc)))


def _rng_for(node_id: str, seed: int | None) -> random.Random:
    return random.Random(seed if seed is not None else f"giants-host:{node_id}")


async def run_process(
    factory: ProcessFactory,
    *,
    node_id: str,
    endpoint: Endpoint,
    store: DurableStore,
    tick_s: float = 0.01,
    seed: int | None = None,
    trace: TraceWriter | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Host the process built by ``factory`` on ``endpoint`` until cancelled.

    Calls ``task_status.started(endpoint.address)`` once the process has started and its
    start effects are flushed. Raises whatever the process raises (a bug), and whatever
    ``store.load`` / ``store.apply`` raise (the node cannot go on without its disk).
    """
    if tick_s <= 0:
        raise ValueError(f"tick_s must be positive, got {tick_s}")
    durable = await store.load()
    host = _Host(factory(durable), node_id, endpoint, store, _rng_for(node_id, seed), trace)
    async with host.lock:
        io = host.new_io()
        host.process.start(io)
        await host.flush(io)
    set_receiver = getattr(endpoint, "set_receiver", None)
    if set_receiver is not None:
        set_receiver(host.deliver)
        while True:  # what arrived before the receiver was set goes first
            try:
                host.backlog.append(endpoint.receive_nowait())
            except trio.WouldBlock:
                break
        async with host.lock:
            await host._drain()
    try:
        task_status.started(endpoint.address)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(host.ticker, tick_s)
            nursery.start_soon(host.watch_failure)
            if set_receiver is None:
                nursery.start_soon(host.receive_loop)
    finally:
        if set_receiver is not None:
            set_receiver(None)
