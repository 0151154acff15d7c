"""The driver layer on the in-memory transport under trio's MockClock: the host's group
commit with the leader's early Accepts (``early_send``), and the address book following
the configuration (``PeerBook``) so a learner added at run time is reached and catches
up. Same framing, codec and host code as the TCP nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio
import trio.testing

from giants.core.consensus import ConsensusConfig
from giants.core.envelope import Envelope, ErrorReply
from giants.core.host import MemoryDurableStore, run_process
from giants.core.kv import KVStateMachine
from giants.core.process import Durable, PersistOp
from giants.core.rsm import (
    ClientCommand,
    ClientQuery,
    CommandResult,
    LeaderInfo,
    MembershipChange,
    QueryResult,
    ReplicatedService,
    WhoIsLeader,
)
from giants.core.rsm_server import EarlySendStore, PeerBook
from giants.core.transport import memory
from giants.paxos import paxos_factory
from giants.paxos.node import sent_before_durable

NODES = ["n0", "n1", "n2"]
FSYNC_S = 0.005


class Recorder:
    """Shared event log: which messages left while a durable write was under way."""

    def __init__(self) -> None:
        self.applying: dict[str, int] = {}
        self.sent_during_apply: list[tuple[str, str]] = []


class SlowStore(MemoryDurableStore):
    def __init__(self, node: str, rec: Recorder) -> None:
        super().__init__()
        self.node, self.rec = node, rec

    async def apply(self, ops: Sequence[PersistOp]) -> None:
        self.rec.applying[self.node] = self.rec.applying.get(self.node, 0) + 1
        await trio.sleep(FSYNC_S)
        await super().apply(ops)
        self.rec.applying[self.node] -= 1


class WatchedEndpoint:
    """Delegates to the real endpoint; records sends made while a write is under way."""

    def __init__(self, ep: Any, node: str, rec: Recorder) -> None:
        self._ep, self.node, self.rec = ep, node, rec
        self.books: list[dict[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ep, name)

    async def send_many(self, envs: Sequence[Envelope]) -> None:
        if self.rec.applying.get(self.node):
            self.rec.sent_during_apply += [(self.node, type(e.body).__name__) for e in envs]
        await self._ep.send_many(envs)

    def set_peers(self, peers: dict[str, str]) -> None:
        self.books.append(dict(peers))
        self._ep.set_peers(peers)


async def _node(net: memory.MemoryNetwork, node: str, rec: Recorder, join: bool,
                eps: dict[str, WatchedEndpoint], svcs: dict[str, ReplicatedService]) -> None:
    peers = {n: n for n in NODES}
    config = ConsensusConfig(node, peers, join=join)
    async with memory.serve(net, node, peers={n: n for n in NODES if n != node}) as raw:
        ep = WatchedEndpoint(raw, node, rec)
        eps[node] = ep
        early = EarlySendStore(SlowStore(node, rec), ep, sent_before_durable)  # type: ignore[arg-type]

        def build(durable: Durable) -> PeerBook:
            svcs[node] = ReplicatedService(KVStateMachine(), paxos_factory, config, durable)
            early.book = PeerBook(svcs[node], ep, peers)  # type: ignore[arg-type]
            return early.book

        await run_process(build, node_id=node, endpoint=ep, store=early)  # type: ignore[arg-type]


async def _leader(client: memory.Client) -> str:
    while True:
        for n in NODES:
            info = await client.request(n, WhoIsLeader(), timeout=1.0)
            if isinstance(info, LeaderInfo) and info.leader is not None:
                return info.leader
        await trio.sleep(0.05)


async def test_early_accepts_and_a_learner_joining_through_the_address_book(
        autojump_clock: trio.testing.MockClock) -> None:
    net, rec = memory.MemoryNetwork(), Recorder()
    eps: dict[str, WatchedEndpoint] = {}
    svcs: dict[str, ReplicatedService] = {}
    async with trio.open_nursery() as nursery:
        for n in NODES:
            nursery.start_soon(_node, net, n, rec, False, eps, svcs)
        async with memory.Client(net, "c") as client:
            leader = await _leader(client)
            for seq in range(1, 21):
                cmd = ClientCommand("c", seq, ["put", f"k{seq % 3}", seq])
                reply = await client.request(leader, cmd, timeout=5.0)
                assert isinstance(reply, CommandResult), reply
            # a fourth node joins: it is in nobody's initial address book
            nursery.start_soon(_node, net, "n3", rec, True, eps, svcs)
            reply = await client.request(leader, MembershipChange("add_learner", "n3", "n3"),
                                         timeout=5.0)
            assert not isinstance(reply, ErrorReply), reply
            reply = await client.request(leader, ClientCommand("c", 21, ["put", "last", 1]),
                                         timeout=5.0)
            assert isinstance(reply, CommandResult), reply
            with trio.fail_after(10):
                while "n3" not in svcs or svcs["n3"].sm.data != svcs[leader].sm.data:
                    await trio.sleep(0.05)
            reply = await client.request(leader, ClientQuery(["get", "last"]), timeout=5.0)
            assert isinstance(reply, QueryResult) and reply.result == 1
        nursery.cancel_scope.cancel()
    assert any("n3" in book for book in eps[leader].books), "the leader never learnt n3's address"
    kinds = {kind for _, kind in rec.sent_during_apply}
    assert "Accept" in kinds, "no Accept left during the leader's durable write"
    assert kinds == {"Accept"}, f"only Accepts may leave before the write is durable: {kinds}"
