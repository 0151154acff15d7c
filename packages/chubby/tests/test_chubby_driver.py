"""The trio drivers under trio's MockClock on the in-memory transport: three replicas
hosted by ``run_process`` (as ``node.py`` does) and ``ChubbyClient``s. The client
takes a lock, caches a file, then the master's host is cancelled (a crash): a new master
takes over and the client keeps its session, handle and lock. And the lock service as
a user drives it: an ``acquire`` that times out (cancelled, or past the call deadline)
and is then asked again on the same session gets the lock once it is free
(docs/integration.md, finding 2)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from giants.chubby._master import CellOptions, ChubbyReplica
from giants.chubby._messages import MasterInfo, WhereIsMaster
from giants.chubby.client import ChubbyClient, ClientOptions
from giants.chubby.lockservice import ChubbyLockService
from giants.core.consensus import ConsensusConfig
from giants.core.errors import GiantsError, Timeout
from giants.core.host import MemoryDurableStore, run_process
from giants.core.interfaces import Sequencer
from giants.core.transport import memory
from giants.raft._core import raft_factory

NAMES = ["chubby-0", "chubby-1", "chubby-2"]
CELL = CellOptions(lease_s=2.0, keepalive_margin_s=0.5, lock_delay_s=1.0)


async def _replica(net: memory.MemoryNetwork, name: str, store: MemoryDurableStore,
                   task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    config = ConsensusConfig(node_id=name, peers={n: n for n in NAMES})
    async with memory.serve(net, name, peers={n: n for n in NAMES if n != name}) as ep:
        await run_process(lambda d: ChubbyReplica(raft_factory, config, d, CELL),
                          node_id=name, endpoint=ep, store=store, task_status=task_status)


def _start_cell(nursery: trio.Nursery, net: memory.MemoryNetwork) -> dict[str, trio.CancelScope]:
    """Host the replicas; cancelling a scope crashes that replica's host."""
    stores = {n: MemoryDurableStore() for n in NAMES}
    scopes = {}
    for n in NAMES:
        scope = trio.CancelScope()
        scopes[n] = scope

        async def host(n: str = n, scope: trio.CancelScope = scope) -> None:
            with scope:
                await _replica(net, n, stores[n])

        nursery.start_soon(host)
    return scopes


async def test_client_keeps_lock_when_master_host_dies(
        autojump_clock: trio.testing.MockClock) -> None:
    net = memory.MemoryNetwork()
    async with trio.open_nursery() as nursery:
        scopes = _start_cell(nursery, net)
        opts = ClientOptions(grace_s=20.0, attempt_s=0.5, op_timeout_s=30.0,
                             resend_before_s=0.4)
        async with ChubbyClient(NAMES, user="t", options=opts,
                                transport=memory.Client(net, "client")) as c:
            h = await c.open("/ls/cell/lock", "rwl", create="file")
            seq = await c.acquire(h)
            await c.write(h, b"data")
            await c.read(h)
            await c.read(h)
            assert c.core.stats["cache_hits"] >= 1
            master, epoch = await _master(net)
            scopes[master].cancel()
            with trio.fail_after(30):
                async for ev in c.events():
                    if ev[0] == "failover":
                        break
            assert c.state == "safe"
            assert await c.check_sequencer(seq)
            assert (await c.read(h))[0] == b"data"
            new, new_epoch = await _master(net)
            assert new != master and new_epoch == epoch + 1
        nursery.cancel_scope.cancel()


async def test_lock_service_acquire_again_after_timeouts(
        autojump_clock: trio.testing.MockClock) -> None:
    net = memory.MemoryNetwork()
    opts = ClientOptions(grace_s=20.0, attempt_s=0.5, op_timeout_s=3.0, resend_before_s=0.4)
    async with trio.open_nursery() as nursery:
        _start_cell(nursery, net)
        async with ChubbyClient(NAMES, user="a", options=opts,
                                transport=memory.Client(net, "client-a")) as ca, \
                ChubbyClient(NAMES, user="b", options=opts,
                             transport=memory.Client(net, "client-b")) as cb:
            a, b = ChubbyLockService(ca), ChubbyLockService(cb)
            t1 = await a.acquire("svc/master")
            with pytest.raises(Timeout):
                await b.acquire("svc/master", timeout_s=0.5)     # cancelled: abandoned
            with pytest.raises(Timeout):
                await b.acquire("svc/master")                    # past op_timeout_s
            got: list[Sequencer] = []

            async def ask_again() -> None:
                got.append(await b.acquire("svc/master", timeout_s=10))

            async with trio.open_nursery() as waiting:
                waiting.start_soon(ask_again)
                await trio.sleep(0.5)
                await a.release("svc/master")
            assert got[0].generation > t1.generation
            assert await a.check_sequencer(got[0]) and not await a.check_sequencer(t1)
            await b.release("svc/master")
            assert (await a.acquire("svc/master", timeout_s=5)).generation > got[0].generation
        nursery.cancel_scope.cancel()


async def _master(net: memory.MemoryNetwork) -> tuple[str, int]:
    async with memory.Client(net, "finder") as client:
        with trio.fail_after(30):
            while True:
                for n in NAMES:
                    try:
                        info = await client.request(n, WhereIsMaster(), timeout=0.5)
                    except GiantsError:
                        continue
                    if isinstance(info, MasterInfo) and info.master is not None:
                        return info.master, info.epoch
                await trio.sleep(0.05)

