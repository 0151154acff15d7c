"""The trio driver path (``run_process`` hosting the cores) on the in-memory transport
under trio's autojump MockClock: the real client runs concurrent bank transfers across
two shards, a shard is stopped and rebuilt from its durable store mid-run, and money is
neither created nor destroyed."""

from __future__ import annotations

import random
from typing import Any

import trio
import trio.testing

from giants.core.errors import Timeout, TxnAborted
from giants.core.host import MemoryDurableStore, run_process
from giants.core.transport import memory
from giants.twopc import Coordinator, Participant, ParticipantOptions
from giants.twopc.client import TxnClient

NAMES = ["coord-0", "shard-0", "shard-1"]
ACCOUNTS = [f"a{i}" for i in range(6)]


async def _host(net: memory.MemoryNetwork, name: str, store: MemoryDurableStore,
                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    peers = {n: n for n in NAMES}
    if name == "coord-0":
        def factory(d: Any) -> Any:
            return Coordinator(name, d, shards=NAMES[1:])
    else:
        def factory(d: Any) -> Any:
            return Participant(name, d, ParticipantOptions(detector=["coord-0"]))
    async with memory.serve(net, name, peers=peers) as ep:
        await run_process(factory, node_id=name, endpoint=ep, store=store, tick_s=0.01,
                          task_status=task_status)


async def test_transfers_through_the_trio_driver_survive_a_shard_restart(
        autojump_clock: trio.testing.MockClock) -> None:
    net = memory.MemoryNetwork()
    stores = {n: MemoryDurableStore() for n in NAMES}
    async with trio.open_nursery() as nursery:
        scopes = {}
        for n in NAMES:
            scopes[n] = trio.CancelScope()

            async def run(n: str = n) -> None:
                while True:
                    with scopes[n]:
                        await _host(net, n, stores[n])
                    scopes[n] = trio.CancelScope()
                    await trio.sleep(0.5)            # down for a while, then rebuilt

            nursery.start_soon(run)
        await trio.sleep(0.1)
        rpc = memory.Client(net, "bank")
        async with TxnClient(NAMES[:1], NAMES[1:], rpc=rpc, op_timeout_s=2.0,
                             commit_timeout_s=20.0) as db:
            async with db.transaction() as txn:
                for a in ACCOUNTS:
                    await txn.put(a, 100)
            outcomes: dict[str, int] = {"committed": 0, "aborted": 0, "unknown": 0}

            async def worker(seed: int) -> None:
                rng = random.Random(seed)
                for _ in range(15):
                    await trio.sleep(rng.uniform(0.0, 0.05))     # think time
                    src, dst = rng.sample(ACCOUNTS, 2)
                    try:
                        async with db.transaction() as txn:
                            a, b = await txn.get(src), await txn.get(dst)
                            await txn.put(src, a - 5)
                            await txn.put(dst, b + 5)
                        outcomes["committed"] += 1
                    except TxnAborted:
                        outcomes["aborted"] += 1
                    except Timeout:
                        outcomes["unknown"] += 1

            async with trio.open_nursery() as workers:
                for w in range(3):
                    workers.start_soon(worker, w)
                while outcomes["committed"] < 5:
                    await trio.sleep(0.001)
                scopes["shard-1"].cancel()               # the shard process dies mid-run
                killed_at = sum(outcomes.values())
            await trio.sleep(5.0)                        # recovered, in-doubt resolved
            total = 0
            async with db.transaction() as txn:
                for a in ACCOUNTS:
                    total += await txn.get(a)
        nursery.cancel_scope.cancel()
    assert total == 100 * len(ACCOUNTS), outcomes
    assert killed_at < 45 and outcomes["committed"] > 5, (killed_at, outcomes)
    assert stores["shard-1"].snapshot().namespace("2pc.prepared") == {}
