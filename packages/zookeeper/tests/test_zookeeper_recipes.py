"""kazoo's recipes, unchanged, against a real 3-server ensemble (ZooKeeper paper
section 2.4, "Examples of primitives": locks without herd effect, double barriers,
leader election, group membership, queues)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionClosedError

pytestmark = pytest.mark.real


@pytest.fixture
def clients(chroot_hosts: str) -> Iterator[list[Any]]:
    out = []
    for _ in range(3):
        c = KazooClient(hosts=chroot_hosts)
        c.start(timeout=15)
        out.append(c)
    yield out
    for c in out:
        c.stop()
        c.close()


def _wait(pred: Any, timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(0.02)


def test_lock_is_exclusive_and_fair(clients: list[Any]) -> None:
    holders: list[int] = []
    inside = [0]
    max_inside = [0]

    def work(i: int) -> None:
        lock = clients[i].Lock("/lock", f"c{i}")
        for _ in range(3):
            with lock:
                inside[0] += 1
                max_inside[0] = max(max_inside[0], inside[0])
                holders.append(i)
                time.sleep(0.01)
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert max_inside[0] == 1 and sorted(holders) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_election_picks_one_leader_and_fails_over(clients: list[Any]) -> None:
    leaders: list[int] = []
    stop = threading.Event()

    closed: list[int] = []

    def run(i: int) -> None:
        def lead() -> None:
            leaders.append(i)
            stop.wait(30)
        try:
            clients[i].Election("/election", f"c{i}").run(lead)
        except ConnectionClosedError:  # its client was stopped under it (client 0, below)
            closed.append(i)

    first = threading.Thread(target=run, args=(0,), daemon=True)
    first.start()
    _wait(lambda: leaders == [0])
    second = threading.Thread(target=run, args=(1,), daemon=True)
    second.start()
    time.sleep(0.2)
    assert leaders == [0]
    clients[2].sync("/")
    assert clients[2].Election("/election").contenders() == ["c0", "c1"]
    clients[0].stop()  # the leader's session ends: its ephemeral node goes
    _wait(lambda: leaders == [0, 1])
    stop.set()
    first.join(10)
    second.join(10)
    assert closed == [0]  # the stopped leader's release could not reach the ensemble


def test_barrier_and_double_barrier(clients: list[Any]) -> None:
    barrier = clients[0].Barrier("/barrier")
    barrier.create()
    clients[1].sync("/")  # the waiter's server may lag; without this it can miss the barrier
    passed = []
    t = threading.Thread(target=lambda: passed.append(clients[1].Barrier("/barrier").wait(20)))
    t.start()
    time.sleep(0.2)
    assert passed == []
    barrier.remove()
    t.join(20)
    assert passed == [True]

    entered: list[int] = []
    left: list[int] = []

    def member(i: int) -> None:
        db = clients[i].DoubleBarrier("/double", 3)
        db.enter()
        entered.append(i)
        db.leave()
        left.append(i)

    threads = [threading.Thread(target=member, args=(i,)) for i in range(3)]
    threads[0].start()
    threads[1].start()
    time.sleep(0.3)
    assert entered == []  # nobody enters before all three arrived
    threads[2].start()
    for th in threads:
        th.join(30)
    assert sorted(entered) == [0, 1, 2] and sorted(left) == [0, 1, 2]


def test_queue_and_locking_queue(clients: list[Any]) -> None:
    q = clients[0].Queue("/queue")
    for item in (b"a", b"b", b"c"):
        q.put(item)
    clients[1].sync("/")
    assert [clients[1].Queue("/queue").get() for _ in range(3)] == [b"a", b"b", b"c"]
    assert q.get() is None

    lq = clients[0].LockingQueue("/lqueue")
    lq.put_all([b"x", b"y"])
    consumer = clients[1].LockingQueue("/lqueue")
    assert consumer.get(10) == b"x"
    assert clients[2].LockingQueue("/lqueue").get(10) == b"y"  # x is locked, not lost
    assert consumer.consume()
    clients[0].sync("/")
    assert len(lq) == 1


def test_counter_under_contention(clients: list[Any]) -> None:
    def bump(i: int) -> None:
        counter = clients[i].Counter("/counter")
        for _ in range(10):
            counter += 1

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    clients[0].sync("/")
    assert clients[0].Counter("/counter").value == 30


def test_party_and_partitioner(clients: list[Any]) -> None:
    parties = [c.Party("/party", f"m{i}") for i, c in enumerate(clients)]
    for p in parties:
        p.join()
    clients[0].sync("/")
    assert sorted(parties[0]) == ["m0", "m1", "m2"]
    parties[1].leave()
    clients[0].sync("/")
    assert sorted(parties[0]) == ["m0", "m2"]

    items = [f"item{i}" for i in range(6)]
    parts = [c.SetPartitioner("/partitioner", set=items, time_boundary=0.3,
                              identifier=f"w{i}") for i, c in enumerate(clients[:2])]
    _wait(lambda: all(p.acquired for p in parts), 30)
    owned = [set(p) for p in parts]
    assert owned[0] | owned[1] == set(items) and not owned[0] & owned[1]
    for p in parts:
        p.finish()
