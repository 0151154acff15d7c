"""The trio host (giants.core.host) on the memory transport under an autojump MockClock.

Checks the driver's promises: start/receive/tick are called and their effects carried
out, persists are durable before any message of the same call leaves (contract order),
queued envelopes share one durable write (group commit), calls never overlap, state
survives a restart, bad requests are answered while bugs crash the node, and ids,
randomness and traces are as documented.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from giants.core.codec import message
from giants.core.envelope import Envelope
from giants.core.errors import RemoteProtocolError
from giants.core.host import MemoryDurableStore, run_process
from giants.core.process import Durable, Io, PersistOp
from giants.core.trace import TraceWriter
from giants.core.transport import memory

TIMEOUT_S = 5.0


@message("test.host.incr")
@dataclass(frozen=True, slots=True)
class Incr:
    n: int


@message("test.host.count")
@dataclass(frozen=True, slots=True)
class Count:
    value: int


@message("test.host.query")
@dataclass(frozen=True, slots=True)
class Query:
    what: str


@message("test.host.answer")
@dataclass(frozen=True, slots=True)
class Answer:
    value: Any


class Counter:
    """A durable counter: ``Incr`` persists and replies; ``Query`` reports ticks, the
    first random number, or misbehaves (``bad``: a protocol error, ``bug``: a crash)."""

    def __init__(self, durable: Durable, guard: Any = None) -> None:
        self.value = durable.get("counter", "value", 0)
        self.ticks = 0
        self.first_random = 0.0
        self.guard = guard

    def _check(self) -> None:
        if self.guard is not None:
            self.guard()

    def start(self, io: Io) -> None:
        self._check()
        self.first_random = io.rng.random()
        io.trace("started", value=self.value, node="shadowed")

    def tick(self, io: Io) -> None:
        self._check()
        self.ticks += 1

    def receive(self, io: Io, env: Envelope) -> None:
        self._check()
        body = env.body
        if isinstance(body, Incr):
            self.value += body.n
            io.put("counter", "value", self.value)
            io.reply(env, Count(self.value))
        elif isinstance(body, Query) and body.what == "ticks":
            io.reply(env, Answer(self.ticks))
        elif isinstance(body, Query) and body.what == "random":
            io.reply(env, Answer(self.first_random))
        elif isinstance(body, Query) and body.what == "bad":
            raise RemoteProtocolError("bad query")
        elif isinstance(body, Query) and body.what == "bug":
            raise ValueError("a bug in the process")


class RecordingStore(MemoryDurableStore):
    """Records each apply into a shared event log; can hold applies until released."""

    def __init__(self, events: list[Any]) -> None:
        super().__init__()
        self.events = events
        self.batches: list[int] = []
        self.busy = False
        self.hold: trio.Event | None = None
        self.entered = trio.Event()

    async def apply(self, ops: Sequence[PersistOp]) -> None:
        self.busy = True
        self.entered.set()
        self.events.append(("apply-start", len(ops)))
        if self.hold is not None:
            await self.hold.wait()
        await trio.sleep(0.05)  # a slow disk: ticks fall due meanwhile
        await super().apply(ops)
        self.batches.append(len(ops))
        self.events.append(("apply-done", len(ops)))
        self.busy = False


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def _host(nursery: trio.Nursery, net: memory.MemoryNetwork, store: Any,
                name: str = "n1", **kw: Any) -> str:
    """Serve ``name`` on ``net`` and host a Counter on it; returns its address."""
    factory = kw.pop("factory", Counter)

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with memory.serve(net, name) as ep:
            await run_process(factory, node_id=name, endpoint=ep, store=store,
                              task_status=task_status, **kw)

    address: str = await nursery.start(run)
    return address


async def test_counter_replies_and_persists(autojump_clock: trio.abc.Clock) -> None:
    net = memory.MemoryNetwork()
    store = MemoryDurableStore()
    async with trio.open_nursery() as nursery, memory.Client(net, "c1") as c:
        address = await _host(nursery, net, store)
        assert address == "n1"
        assert await c.request(address, Incr(2), timeout=TIMEOUT_S) == Count(2)
        assert await c.request(address, Incr(3), timeout=TIMEOUT_S) == Count(5)
        assert store.snapshot().get("counter", "value") == 5
        nursery.cancel_scope.cancel()


async def test_restart_recovers_what_was_persisted(autojump_clock: trio.abc.Clock) -> None:
    net = memory.MemoryNetwork()
    store = MemoryDurableStore()
    async with memory.Client(net, "c1") as c:
        async with trio.open_nursery() as nursery:
            address = await _host(nursery, net, store)
            await c.request(address, Incr(7), timeout=TIMEOUT_S)
            nursery.cancel_scope.cancel()  # the node dies; only the store survives
        async with trio.open_nursery() as nursery:
            address = await _host(nursery, net, store)
            assert await c.request(address, Incr(1), timeout=TIMEOUT_S) == Count(8)
            nursery.cancel_scope.cancel()


async def test_no_message_leaves_before_its_persist_is_durable(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = memory.MemoryNetwork()
    events: list[Any] = []
    store = RecordingStore(events)
    store.hold = trio.Event()
    async with trio.open_nursery() as nursery, memory.Client(net, "c1") as c:
        address = await _host(nursery, net, store)

        async def ask() -> None:
            events.append(("reply", await c.request(address, Incr(1), timeout=100.0)))

        nursery.start_soon(ask)
        await store.entered.wait()
        await trio.sleep(10.0)  # ten virtual seconds with the disk write stuck
        assert events == [("apply-start", 1)]
        store.hold.set()
        while len(events) < 3:
            await trio.sleep(0.01)
        assert events == [("apply-start", 1), ("apply-done", 1), ("reply", Count(1))]
        nursery.cancel_scope.cancel()


async def test_queued_requests_share_one_durable_write(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = memory.MemoryNetwork()
    store = RecordingStore([])
    store.hold = trio.Event()
    async with trio.open_nursery() as nursery, memory.Client(net, "c1") as c:
        address = await _host(nursery, net, store)
        replies: list[Count] = []

        async def ask() -> None:
            replies.append(await c.request(address, Incr(1), timeout=100.0))

        nursery.start_soon(ask)
        await store.entered.wait()  # the first write is stuck; 20 more requests queue
        async with trio.open_nursery() as askers:
            for _ in range(20):
                askers.start_soon(ask)
            await trio.sleep(1.0)
            store.hold.set()
        assert store.batches == [1, 20]
        assert sorted(r.value for r in replies) == list(range(1, 22))
        nursery.cancel_scope.cancel()


async def test_process_calls_never_overlap_a_flush(autojump_clock: trio.abc.Clock) -> None:
    net = memory.MemoryNetwork()
    store = RecordingStore([])

    def guard() -> None:
        assert not store.busy, "process called while a durable write was in progress"

    async with trio.open_nursery() as nursery, memory.Client(net, "c1") as c:
        address = await _host(nursery, net, store, tick_s=0.01,
                              factory=lambda d: Counter(d, guard))
        for n in range(10):  # each apply takes 0.05 s: five ticks fall due during it
            assert await c.request(address, Incr(1), timeout=TIMEOUT_S) == Count(n + 1)
        ticks = (await c.request(address, Query("ticks"), timeout=TIMEOUT_S)).value
        assert ticks > 0
        nursery.cancel_scope.cancel()


async def test_ticks_follow_tick_s(autojump_clock: trio.abc.Clock) -> None:
    net = memory.MemoryNetwork()
    async with trio.open_nursery() as nursery, memory.Client(net, "c1") as c:
        address = await _host(nursery, net, MemoryDurableStore(), tick_s=0.01)
        await trio.sleep(1.0)
        ticks = (await c.request(address, Query("ticks"), timeout=TIMEOUT_S)).value
        assert 99 <= ticks <= 101
        nursery.cancel_scope.cancel()


async def test_bad_request_is_answered_and_the_node_goes_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    net = memory.MemoryNetwork()
    async with trio.open_nursery() as nursery, memory.Client(net, "c1") as c:
        address = await _host(nursery, net, MemoryDurableStore())
        with pytest.raises(RemoteProtocolError, match="bad query"):
            await c.request(address, Query("bad"), timeout=TIMEOUT_S)
        assert await c.request(address, Incr(4), timeout=TIMEOUT_S) == Count(4)
        nursery.cancel_scope.cancel()


async def test_a_process_bug_crashes_the_node(autojump_clock: trio.abc.Clock) -> None:
    net = memory.MemoryNetwork()
    with pytest.RaisesGroup(ValueError, flatten_subgroups=True):
        async with trio.open_nursery() as nursery, memory.Client(net, "c1") as c:
            address = await _host(nursery, net, MemoryDurableStore())
            await c.send(address, Query("bug"))
            await trio.sleep(100.0)


async def test_rng_seeded_by_seed_or_node_id(autojump_clock: trio.abc.Clock) -> None:
    net = memory.MemoryNetwork()

    async def first_random(name: str, seed: int | None) -> float:
        async with trio.open_nursery() as nursery, memory.Client(net, "c1") as c:
            address = await _host(nursery, net, MemoryDurableStore(), name=name, seed=seed)
            value: float = (await c.request(address, Query("random"), timeout=TIMEOUT_S)).value
            nursery.cancel_scope.cancel()
        return value

    assert await first_random("a", 1) == await first_random("b", 1)
    assert await first_random("a", None) == await first_random("a", None)
    assert await first_random("a", None) != await first_random("b", None)


async def test_trace_records_recv_send_and_state(autojump_clock: trio.abc.Clock) -> None:
    net = memory.MemoryNetwork()
    trace = TraceWriter()
    async with trio.open_nursery() as nursery, memory.Client(net, "c1") as c:
        address = await _host(nursery, net, MemoryDurableStore(), trace=trace)
        await c.request(address, Incr(1), timeout=TIMEOUT_S)
        await c.request(address, Incr(1), timeout=TIMEOUT_S)
        nursery.cancel_scope.cancel()
    records = [json.loads(line) for line in trace.lines]
    state = [r for r in records if r["kind"] == "state"]
    assert state == [{"seq": 1, "t": state[0]["t"], "node": "n1", "kind": "state",
                      "what": "started", "value": 0, "_node": "shadowed"}]
    recvs = [r for r in records if r["kind"] == "recv"]
    sends = [r for r in records if r["kind"] == "send"]
    assert [(r["src"], r["msg"]) for r in recvs] == [("c1", "Incr"), ("c1", "Incr")]
    assert [(r["dst"], r["msg"], r["id"]) for r in sends] == [("c1", "Count", 1),
                                                               ("c1", "Count", 2)]
    assert [s["reply_to"] for s in sends] == [r["id"] for r in recvs]


class Recorder(Counter):
    """A Counter that also records the ``n`` of every ``Incr`` in the order received."""

    def __init__(self, durable: Durable) -> None:
        super().__init__(durable)
        self.seen: list[int] = []

    def receive(self, io: Io, env: Envelope) -> None:
        if isinstance(env.body, Incr):
            self.seen.append(env.body.n)
        super().receive(io, env)


@pytest.mark.parametrize("transport", ["memory", "tcp"])
async def test_arrival_order_kept_across_direct_steps_and_the_backlog(transport: str) -> None:
    """Messages from one connection reach the process in the order sent, whether the
    reader task stepped the process itself or they waited in the backlog behind a slow
    durable write; and a flood beyond the backlog's size loses nothing."""
    from giants.core.transport import tcp
    from giants.core.transport._base import RECEIVE_QUEUE_SIZE

    store = RecordingStore([])
    store.hold = trio.Event()
    recorders: list[Recorder] = []

    def factory(durable: Durable) -> Recorder:
        recorders.append(Recorder(durable))
        return recorders[0]

    total = RECEIVE_QUEUE_SIZE + 500
    net = memory.MemoryNetwork()
    serve = (memory.serve(net, "n1") if transport == "memory" else tcp.serve("n1"))
    async with serve as ep, trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_process(factory, node_id="n1", endpoint=ep,
                                               store=store))
        client = memory.Client(net, "c1") if transport == "memory" else tcp.Client("c1")
        async with client as c:
            await c.send(ep.address, Incr(0))
            await store.entered.wait()  # the first write is stuck: the rest must queue
            for n in range(1, total):
                await c.send(ep.address, Incr(n))
            await trio.sleep(0.2)
            store.hold.set()
            with trio.fail_after(30):
                while sum(store.batches) < total:
                    await trio.sleep(0.01)
        assert recorders[0].seen == list(range(total))
        assert store.batches[0] == 1 and max(store.batches) > 1  # group commit
        nursery.cancel_scope.cancel()
