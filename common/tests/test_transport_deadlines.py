"""The client's request deadlines (giants.core.transport._deadlines and its use).

One timer task expires requests instead of a cancel scope per request; these tests pin
down that it is as exact as a cancel scope would be, that a later, shorter deadline is
not held up behind an earlier, longer one, and that finished requests do not pile up.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from giants.core.envelope import Envelope
from giants.core.errors import Timeout
from giants.core.testing.transport_conformance import MemoryKit, Ping, Pong
from giants.core.transport._deadlines import COMPACT_MIN_ENTRIES, DeadlineTimer


class Item:
    def __init__(self, name: str, log: list[tuple[str, float]]) -> None:
        self.name = name
        self.log = log
        self.finished = False

    async def expire(self) -> None:
        self.log.append((self.name, trio.current_time()))


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_items_expire_at_their_deadlines_in_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[tuple[str, float]] = []
    timer = DeadlineTimer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timer.run)
        start = trio.current_time()
        timer.schedule(start + 100.0, Item("long", log))
        await trio.sleep(1.0)
        timer.schedule(start + 3.0, Item("short", log))  # earlier than the timer's plan
        done = Item("done", log)
        timer.schedule(start + 2.0, done)
        done.finished = True  # finished before its deadline: never expired
        await trio.sleep(200.0)
        nursery.cancel_scope.cancel()
    assert log == [("short", start + 3.0), ("long", start + 100.0)]


async def test_finished_entries_are_compacted(autojump_clock: trio.abc.Clock) -> None:
    timer = DeadlineTimer()
    for n in range(10 * COMPACT_MIN_ENTRIES):
        item = Item(str(n), [])
        timer.schedule(1000.0 + n, item)
        item.finished = True
    assert len(timer) <= COMPACT_MIN_ENTRIES


async def test_a_short_request_times_out_behind_a_long_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    kit = MemoryKit()
    with trio.fail_after(1000.0):  # virtual seconds: a deadline never kept fails, not hangs
        await _short_behind_long(kit)


async def _short_behind_long(kit: MemoryKit) -> None:
    async with kit.serve("s1") as ep, kit.client("c1") as c, trio.open_nursery() as nursery:

        async def long_request() -> None:
            with pytest.raises(Timeout):
                await c.request(ep.address, Ping(1), timeout=100.0)

        nursery.start_soon(long_request)
        await ep.receive()
        started = trio.current_time()
        with pytest.raises(Timeout):
            await c.request(ep.address, Ping(2), timeout=1.0)
        assert trio.current_time() - started == pytest.approx(1.0)
        await ep.receive()

        # The connection still works for a fresh request after both deadlines.
        async def answer() -> None:
            env = await ep.receive()
            await ep.send(Envelope("s1", env.source, 1, env.msg_id, Pong(3)))

        nursery.start_soon(answer)
        assert await c.request(ep.address, Ping(3), timeout=5.0) == Pong(3)
