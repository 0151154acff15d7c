"""Prompt commit notices (``_server`` docstring; ZooKeeper paper section 4.2): a server
whose client waits for the server's own apply -- a connection with watches after a
write, a read queued behind a write answered early -- asks the leader (``AwaitCommit``)
and learns the commit index from one Raft heartbeat right away, not from the next
periodic heartbeat. Three server cores on Raft, driven by hand: messages are delivered
FIFO through the codec, and no tick happens while a request is in flight, so a reply
that needed a periodic heartbeat would never come."""

from __future__ import annotations

import random
import struct
from functools import partial
from itertools import count
from typing import Any

from giants.core.consensus import ConsensusConfig
from giants.core.envelope import Envelope, decode_envelope, encode_envelope
from giants.core.process import Durable, Io
from giants.raft import raft_factory
from giants.zookeeper._jute import Err, Op, Reader, encode_connect, encode_request
from giants.zookeeper._messages import AwaitCommit, ClientFrame, ServerFrames
from giants.zookeeper._server import ServerOptions, ZooKeeperServer

ACL = [[31, "world", "anyone"]]
NODES = ("zk-0", "zk-1", "zk-2")


class Ensemble:
    """Three servers; ``cli`` is the one client source (connections by number)."""

    def __init__(self, *, prompt: bool = True) -> None:
        peers = {n: n for n in NODES}
        opts = {"heartbeat_ticks": 4, "election_ticks": 10}
        self.rng = random.Random(3)
        self.ids = count(1)
        self.now = 0.0
        self.queue: list[Envelope] = []
        self.out: dict[int, list[bytes]] = {}
        self.seq: dict[int, int] = {}
        self.sent: list[Any] = []
        self.servers = {n: ZooKeeperServer(n, raft_factory, ConsensusConfig(n, peers, options=opts),
                                           Durable(), ServerOptions(tick_ms=200))
                        for n in NODES}
        for server in self.servers.values():
            if not prompt:
                server._notify_commit = None
            self._call(server.node_id, server.start)

    def _call(self, node: str, fn: Any) -> None:
        io = Io(node, self.now, self.rng, lambda: next(self.ids))
        fn(io)
        for env in io.sends:
            if env.target == "cli":
                assert isinstance(env.body, ServerFrames)
                self.out.setdefault(env.body.conn, []).extend(f[4:] for f in env.body.frames)
            else:
                self.sent.append(env.body)
                self.queue.append(decode_envelope(encode_envelope(env)))

    def deliver(self) -> None:
        while self.queue:
            env = self.queue.pop(0)
            self._call(env.target, partial(self.servers[env.target].receive, env=env))

    def tick(self, n: int) -> None:
        for _ in range(n):
            self.now += 0.01
            for node, server in self.servers.items():
                self._call(node, server.tick)
            self.deliver()

    def leader(self) -> str:
        leaders = [n for n, s in self.servers.items() if s.consensus.leader() == n]
        assert len(leaders) == 1, leaders
        return leaders[0]

    def frame(self, node: str, conn: int, data: bytes) -> None:
        self.seq[conn] = self.seq.get(conn, 0) + 1
        env = Envelope("cli", node, next(self.ids), None, ClientFrame(conn, self.seq[conn], data))
        self._call(node, lambda io: self.servers[node].receive(io, env))

    def request(self, node: str, conn: int, xid: int, op: int, body: list[Any]) -> None:
        self.frame(node, conn, encode_request(xid, op, body)[4:])

    def replies(self, conn: int) -> dict[int, int]:
        """xid -> error code of the replies so far (watch events left out)."""
        out = {}
        for f in self.out.get(conn, []):
            xid = struct.unpack(">i", f[:4])[0]
            if xid >= 0:
                r = Reader(f)
                r.int()
                r.long()
                out[xid] = r.int()
        return out


def _follower_session(ens: Ensemble) -> str:
    ens.tick(60)                                   # elect a leader
    follower = next(n for n in NODES if n != ens.leader())
    ens.frame(follower, 1, encode_connect(0, 4000, 0, b"\0" * 16)[4:])
    ens.deliver()
    ens.tick(8)                                    # the handshake is answered
    assert 1 in {c for c, frames in ens.out.items() if frames}
    ens.out.clear()
    ens.request(follower, 1, 1, Op.CREATE, ["/w", b"", ACL, 0])
    ens.request(follower, 1, 2, Op.CREATE, ["/n", b"", ACL, 0])
    ens.deliver()
    ens.tick(8)
    assert ens.replies(1) == {1: Err.OK, 2: Err.OK}
    return follower


def _watch_then_write(prompt: bool) -> tuple[dict[int, int], list[Any]]:
    ens = Ensemble(prompt=prompt)
    follower = _follower_session(ens)
    ens.request(follower, 1, 3, Op.EXISTS, ["/w", True])     # a watch, never fired
    ens.deliver()
    ens.sent.clear()
    ens.request(follower, 1, 4, Op.SET_DATA, ["/n", b"v", -1])
    ens.request(follower, 1, 5, Op.GET_DATA, ["/n", False])
    ens.deliver()                                   # no tick: no periodic heartbeat
    return ens.replies(1), ens.sent


def test_a_watch_holding_connection_is_answered_without_waiting_for_a_heartbeat() -> None:
    replies, sent = _watch_then_write(prompt=True)
    assert replies.get(4) == Err.OK and replies.get(5) == Err.OK
    assert sum(isinstance(m, AwaitCommit) for m in sent) == 1
    replies, sent = _watch_then_write(prompt=False)   # without the notice: stuck
    assert 4 not in replies and 5 not in replies
    assert not any(isinstance(m, AwaitCommit) for m in sent)


def test_a_read_behind_an_early_reply_runs_without_waiting_for_a_heartbeat() -> None:
    for prompt in (True, False):
        ens = Ensemble(prompt=prompt)
        follower = _follower_session(ens)
        ens.request(follower, 1, 3, Op.SET_DATA, ["/n", b"v", -1])
        ens.request(follower, 1, 4, Op.GET_DATA, ["/n", False])
        ens.deliver()
        replies = ens.replies(1)
        assert replies.get(3) == Err.OK              # the early reply (Applied)
        assert (replies.get(4) == Err.OK) == prompt, replies
