"""The trio driver (``giants.raft.node``) on the memory transport under trio's MockClock.

Three nodes elect a leader and serve commands; a fourth node started with ``join`` is
added as a learner -- the leader's endpoint learns its address from the configuration
(``PeerBook``) -- promoted, and catches up; the leader's host is then cancelled (a
crash) and the others elect a new leader that still has every acknowledged write. The
leader's AppendEntries leave while its own log write is under way (``EarlyAppendStore``).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from giants.core.consensus import ConsensusConfig
from giants.core.errors import DefiniteError, IndefiniteError
from giants.core.host import MemoryDurableStore
from giants.core.rsm import (
    ClientCommand,
    ClientQuery,
    LeaderInfo,
    MembershipChange,
    MembershipResult,
    WhoIsLeader,
)
from giants.core.transport import memory
from giants.raft.node import host_node

PEERS = {f"n{i}": f"n{i}" for i in range(3)}


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def start(nursery: trio.Nursery, net: memory.MemoryNetwork, node: str,
                store: MemoryDurableStore, *, join: bool = False) -> trio.CancelScope:
    scope = trio.CancelScope()

    async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            peers = {} if join else PEERS
            async with memory.serve(net, node, peers={k: v for k, v in peers.items()
                                                      if k != node}) as ep:
                await host_node(ep, store, ConsensusConfig(node, peers, join=join),
                                task_status=task_status)

    await nursery.start(run)
    return scope


async def leader_of(client: memory.Client, nodes: list[str]) -> str:
    for _ in range(200):
        for node in nodes:
            try:
                info = await client.request(node, WhoIsLeader(), timeout=0.5)
            except IndefiniteError:
                continue
            if isinstance(info, LeaderInfo) and info.leader in nodes:
                return info.leader
        await trio.sleep(0.05)
    raise AssertionError("no leader")


async def call(client: memory.Client, nodes: list[str], body: Any) -> Any:
    for _ in range(100):
        leader = await leader_of(client, nodes)
        try:
            return await client.request(leader, body, timeout=1.0)
        except (DefiniteError, IndefiniteError):
            await trio.sleep(0.1)
    raise AssertionError(f"{body!r} never answered")


async def test_cluster_learner_promotion_and_leader_crash(autojump_clock: trio.abc.Clock) -> None:
    net = memory.MemoryNetwork()
    stores = {n: MemoryDurableStore() for n in [*PEERS, "n3"]}
    async with trio.open_nursery() as nursery, memory.Client(net, "c1") as client:
        scopes = {n: await start(nursery, net, n, stores[n]) for n in PEERS}
        scopes["n3"] = await start(nursery, net, "n3", stores["n3"], join=True)
        nodes = list(PEERS)
        for i in range(20):
            reply = await call(client, nodes, ClientCommand("c1", i + 1, ["put", f"k{i % 4}", i]))
            assert reply.seq == i + 1
        for op in ("add_learner", "promote"):
            for _ in range(50):
                try:
                    reply = await client.request(await leader_of(client, nodes),
                                                 MembershipChange(op, "n3", "n3"), timeout=1.0)
                except (DefiniteError, IndefiniteError):
                    await trio.sleep(0.2)      # not caught up / previous change pending
                    continue
                break
            assert isinstance(reply, MembershipResult)
        assert "n3" in reply.voters
        nodes.append("n3")
        leader = await leader_of(client, nodes)
        scopes[leader].cancel()                # the leader's process dies
        survivors = [n for n in nodes if n != leader]
        new = await leader_of(client, survivors)
        assert new != leader
        for i in range(4):
            got = await call(client, survivors, ClientQuery(["get", f"k{i}"]))
            assert got.result == 16 + i
        # the learner-turned-voter holds the log on its store
        assert stores["n3"].snapshot().namespace("consensus.log")
        nursery.cancel_scope.cancel()
