"""The ZooKeeper server core: a sans-I/O ``Process`` stacked over a consensus core
(ZooKeeper paper section 4, "ZooKeeper implementation"; Zab's role is played by the
configured consensus plugin).

Per server, the paper's pipeline maps onto this class as follows:

* **Request processor.** A client's write (create, delete, setData, setACL, multi,
  sync, close, and the session handshake) becomes a command (``_tree`` module doc) and
  goes to the consensus leader: proposed directly when this server leads, else sent in a
  ``Forward``. Reads (exists, getData, getChildren, getACL) never leave the server.
* **Atomic broadcast.** The consensus core orders commands; every server applies the
  committed log in index order, so writes are linearizable. The zxid of an entry is
  the log index: the same on every replica and growing along the log, as Zab's ``(epoch, counter)``.
* **Replicated database.** ``DataTree`` (the in-memory tree + sessions); snapshots go
  to the consensus core's ``compact`` every ``snapshot_every`` entries and the log
  suffix replays on restart. The committed log is applied (snapshot installs, index
  order, that snapshot cadence, leadership edges) by ``giants.core.stacked.LogApplier``;
  this class supplies its callbacks.
* **Client order.** Each connection's requests wait in one FIFO queue: a read executes
  only when every earlier request of the connection has been answered, and replies go
  out in request order (FIFO client order; the paper's section 2.3 guarantee). Writes
  carry a per-connection sequence number (``wseq``) that the tree applies in order and
  exactly once, so retransmitting a forward (lost message, leader change) is safe.
* **Early replies.** The leader sends each write's outcome to the server the client is
  connected to (``Applied``) as soon as it applies it. A connection without registered
  watches is answered from that at once; reads behind that reply wait until the local
  tree has applied its zxid and run right after that entry, so read-your-writes and
  FIFO order hold. A connection with watches
  waits for its own server's apply, so its watch events keep their order with its
  replies.
* **Prompt commit notices.** A server that waits to apply a zxid itself (a read queued
  behind an early reply, a watch-holding connection's write) asks the leader
  (``AwaitCommit``), whose consensus core then tells it the commit index as soon as
  that covers the zxid (Raft's ``notify_commit``: one heartbeat), instead of the server
  learning it from the next heartbeat up to a heartbeat interval later. On a consensus
  plugin without ``notify_commit`` the server waits for its usual messages.
* **Watches** are local: registered by a read here, fired when this server applies a
  matching change, sent before any later reply on that connection.
* **Sessions** are replicated: created, attached (reconnect to any server) and closed
  through the log. The leader tracks liveness (other servers ``Touch`` it with the
  sessions they heard from) and proposes expiry after a session's timeout; a new leader
  first grants every session a full timeout.

Ordering contract (enforced by the host): a call's persists (consensus log, snapshot)
are durable before its messages and client replies leave.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Never

from giants.core.consensus import ConsensusConfig, ConsensusCore, ConsensusFactory
from giants.core.envelope import Envelope
from giants.core.errors import NotLeader
from giants.core.process import Durable, Io
from giants.core.stacked import LogApplier, pack, unpack
from giants.zookeeper._answers import (
    ask_commit,
    await_zxid,
    complete,
    fire,
    on_applied,
    release_behind,
)
from giants.zookeeper._conn import Conn, Item, admin_text, digest_id
from giants.zookeeper._jute import (
    AUTH_XID,
    PING_XID,
    READ_OPS,
    WRITE_OPS,
    Err,
    JuteError,
    Op,
    decode_connect,
    decode_request,
)
from giants.zookeeper._messages import (
    AdminWord,
    Applied,
    AwaitCommit,
    ClientFrame,
    Forward,
    Hangup,
    ServerFrames,
    Touch,
)
from giants.zookeeper._replies import read, reply, write_body
from giants.zookeeper._sessions import on_closed, on_session_result, sessions_tick
from giants.zookeeper._tree import DataTree

__all__ = ["ZooKeeperServer", "ServerOptions", "zxid_of"]

# Requests queued on one connection before the server gives up on it (the paper's
# servers throttle at 2,000 outstanding requests; kazoo's async batches stay below).
MAX_QUEUED_PER_CONN = 10_000
# A connection's forwarded writes are sent again when none of them was applied for this
# long (a lost message) or when the leader changed. Progress resets the clock, so a long
# pipelined batch is not retransmitted while it is being worked through.
RETRANSMIT_S = 1.0
# Closed connections remembered, so frames still in flight on one are not mistaken for a
# new connection's handshake.
MAX_DEAD_CONNS = 4096
# Frames held back waiting for an earlier one of the same connection (only the
# simulator reorders; a real connection is TCP). More than this: the link is broken.
MAX_HELD_FRAMES = 256


def zxid_of(term: int, index: int) -> int:
    """A write's zxid: its consensus log index.

    Zab's zxid is an (epoch, counter) pair whose only job for clients is to be the same
    on every server for the same transaction and to grow along the log. The log index has
    both properties on every consensus plugin; the term does not (a Paxos replica that
    learns an already chosen slot does not know the ballot it was chosen in), so it is not
    part of the zxid. ``term`` is kept in the signature for callers holding an entry; the
    server applies with the index alone (``LogApplier`` hands it no term)."""
    del term
    return index


@dataclass(frozen=True)
class ServerOptions:
    """``tick_ms`` is ZooKeeper's tickTime: sessions time out in [2, 20] ticks.
    ``snapshot_every`` plays ZooKeeper's snapCount (100,000 there): a snapshot of the
    whole tree every so many log entries; restart replays at most that many."""

    tick_ms: int = 2000
    snapshot_every: int = 10_000
    max_buffer: int = 0xFFFFF

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServerOptions:
        return cls(**{k: int(v) for k, v in d.items() if k in ("tick_ms", "snapshot_every",
                                                                 "max_buffer")})




class ZooKeeperServer:
    """One ensemble member (a ``Process``). See the module docstring."""

    def __init__(self, node_id: str, consensus_factory: ConsensusFactory,
                 config: ConsensusConfig, durable: Durable,
                 options: ServerOptions | None = None, *, wall_offset_s: float = 0.0) -> None:
        self.node_id = node_id
        # Added to io.now for znode ctime/mtime (epoch ms); the driver measures it.
        self.wall_offset_s = wall_offset_s
        self.opts = options or ServerOptions()
        self.consensus: ConsensusCore = consensus_factory(config, durable)
        # Serves no linearizable reads (reads are local; ``sync`` goes through the log).
        self.applier: LogApplier[Never] = LogApplier(
            self.consensus, self, snapshot_every=self.opts.snapshot_every)
        self.tree = DataTree()
        self.boot = ""
        self.conns: dict[tuple[str, int], Conn] = {}
        self.by_owner: dict[str, Conn] = {}
        self.data_watches: dict[str, set[tuple[str, int]]] = {}
        self.child_watches: dict[str, set[tuple[str, int]]] = {}
        self._out: dict[tuple[str, int], list[bytes]] = {}
        self._close: set[tuple[str, int]] = set()
        self._leader_seen: str | None = None
        self._touched: dict[int, float] = {}
        self._to_touch: set[int] = set()
        self._last_touch_sent = 0.0
        self._expiring: dict[int, float] = {}
        self._tx_seq: dict[tuple[str, int], int] = {}
        self._forwards: dict[str, list[bytes]] = {}
        self._leaderless_since: float | None = None
        self._applied_out: dict[str, list[list[Any]]] = {}
        self._behind: set[tuple[str, int]] = set()
        self._dead: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.now = 0.0
        # ``notify_commit(io, peer, index)`` if the consensus core offers it (Raft).
        self._notify_commit = getattr(self.consensus, "notify_commit", None)
        self._await_zxid = 0    # the highest zxid a client here waits for us to apply
        self._await_asked = 0   # ... and the highest one asked of the leader

    @property
    def applied_index(self) -> int:
        """The last log index applied to the tree."""
        return self.applier.applied_index

    @property
    def _leading(self) -> bool:
        """Whether the consensus core named this server leader at the last drain."""
        return self.applier.leading

    # -- Process ----------------------------------------------------------------------

    def start(self, io: Io) -> None:
        self.boot = f"{io.rng.randint(0, 2**32 - 1):08x}"
        self.now = io.now
        self.applier.start(io)

    def tick(self, io: Io) -> None:
        self.now = io.now
        self.applier.tick(io)
        self._retransmit(io)
        sessions_tick(self, io)
        self._flush(io)

    def receive(self, io: Io, env: Envelope) -> None:
        self.now = io.now
        body = env.body
        if isinstance(body, ClientFrame):
            self._on_frame(io, (env.source, body.conn), body.seq, body.data)
        elif isinstance(body, Forward):
            self._on_forward(io, body)
        elif isinstance(body, Applied):
            on_applied(self, io, body)
        elif isinstance(body, AwaitCommit):
            if self._notify_commit is not None:
                self._notify_commit(io, env.source, body.zxid)
        elif isinstance(body, Touch):
            if self._leading:
                for sid in body.sessions:
                    self._touched[sid] = io.now
        elif isinstance(body, Hangup):
            self._drop_conn((env.source, body.conn))
        elif isinstance(body, AdminWord):
            key = (env.source, body.conn)
            self._send(key, [admin_text(self, body.word).encode()], close=True)
        elif not self.applier.receive(io, env):
            io.trace("zk.unexpected", msg=type(body).__name__)
        self.applier.drain(io)
        self._flush(io)

    def _now_ms(self, io: Io) -> int:
        return int((io.now + self.wall_offset_s) * 1000)

    # -- client frames ----------------------------------------------------------------

    def _on_frame(self, io: Io, key: tuple[str, int], seq: int, data: bytes) -> None:
        conn = self.conns.get(key)
        if conn is None:
            if key in self._dead:
                io.probe("zk.frame_for_closed_connection")
                return
            conn = Conn(key, f"{self.node_id}/{self.boot}/{key[0]}/{key[1]}")
            self.conns[key] = conn
            self.by_owner[conn.owner] = conn
        if seq != conn.rx_next:
            io.probe("zk.frame_out_of_order")
            conn.rx_held[seq] = data
            if len(conn.rx_held) > MAX_HELD_FRAMES:
                self._send(key, [], close=True)
                self._drop_conn(key)
            return
        while True:
            conn.rx_next += 1
            self._on_frame_in_order(io, conn, data)
            nxt = conn.rx_held.pop(conn.rx_next, None)
            if nxt is None or self.conns.get(key) is not conn:
                return
            data = nxt

    def _on_frame_in_order(self, io: Io, conn: Conn, data: bytes) -> None:
        key = conn.key
        conn.last_heard = io.now
        try:
            if conn.state == "new":
                self._on_connect(io, conn, data)
            elif conn.state == "open":
                self._on_request(io, conn, data)
            else:
                raise JuteError("request before the session handshake finished")
        except JuteError as exc:
            io.probe("zk.malformed_frame")
            io.trace("zk.bad_frame", conn=str(key), error=str(exc))
            self._send(key, [], close=True)
            self._drop_conn(key)

    def _on_connect(self, io: Io, conn: Conn, data: bytes) -> None:
        last_zxid, timeout, sid, passwd, _ro = decode_connect(data)
        if last_zxid > self.tree.last_zxid:
            # ZooKeeper refuses a client that has seen a newer state than this server.
            io.probe("zk.refused_lagging_server")
            self._send(conn.key, [], close=True)
            self._drop_conn(conn.key)
            return
        conn.state = "connecting"
        now_ms = self._now_ms(io)
        if sid == 0:
            lo, hi = 2 * self.opts.tick_ms, 20 * self.opts.tick_ms
            timeout = min(max(timeout, lo), hi)
            pw = io.rng.randint(0, 2**128 - 1).to_bytes(16, "big")
            cmd = ["cs", self.node_id, now_ms, timeout, pw, conn.owner]
        else:
            cmd = ["at", self.node_id, now_ms, sid, passwd, conn.owner]
        conn.connect = Item(0, 0, None, command=pack(cmd))
        self._propose_item(io, conn.connect)

    def _on_request(self, io: Io, conn: Conn, data: bytes) -> None:
        xid, op, body = decode_request(data)
        if conn.sid:
            if self._leading:
                self._touched[conn.sid] = io.now
            else:
                self._to_touch.add(conn.sid)
        if op == Op.PING:
            self._send(conn.key, [reply(PING_XID, self.tree.last_zxid, Err.OK)])
            return
        if len(conn.queue) >= MAX_QUEUED_PER_CONN:
            raise JuteError("too many outstanding requests on one connection")
        item = Item(xid, op, body)
        conn.queue.append(item)
        if body is None:
            item.frame = reply(xid, self.tree.last_zxid, Err.UNIMPLEMENTED)
        elif op in WRITE_OPS:
            conn.wseq += 1
            item.wseq = conn.wseq
            item.command = pack(["op", self.node_id, self._now_ms(io), conn.sid,
                                  conn.owner, conn.wseq, conn.auth, op, body])
            self._propose_item(io, item)
        elif op == Op.CLOSE:
            item.command = pack(["cl", self.node_id, self._now_ms(io), conn.sid,
                                  conn.owner])
            self._propose_item(io, item)
        self._pump(conn)

    def _pump(self, conn: Conn) -> None:
        """Answer the head of the queue while it can be answered, in order."""
        out = []
        while conn.queue:
            item = conn.queue[0]
            if item.frame is None:
                if item.command is not None:
                    break
                if self.tree.last_zxid < conn.min_zxid:
                    self._behind.add(conn.key)
                    await_zxid(self, conn.min_zxid)
                    break
                item.frame = self._execute_local(conn, item)
            out.append(item.frame)
            conn.queue.popleft()
            if item.early_zxid > conn.min_zxid:
                conn.min_zxid = item.early_zxid
            if item.op == Op.AUTH and item.body is not None and item.frame[-4:] != b"\0\0\0\0":
                self._send(conn.key, out, close=True)
                self._drop_conn(conn.key)
                return
        if out:
            self._send(conn.key, out)

    def _execute_local(self, conn: Conn, item: Item) -> bytes:
        assert item.body is not None
        zxid = self.tree.last_zxid
        if item.op == Op.AUTH:
            _type, scheme, auth = item.body
            if scheme != "digest" or b":" not in auth:
                return reply(AUTH_XID, zxid, Err.AUTH_FAILED)
            ident = ["digest", digest_id(auth.decode("utf-8", "replace"))]
            if ident not in conn.auth:
                conn.auth.append(ident)
            return reply(AUTH_XID, zxid, Err.OK)
        assert item.op in READ_OPS, item.op
        err, body, watch = read(self.tree, item.op, item.body, conn.auth)
        if watch is not None:
            table = self.data_watches if watch == "data" else self.child_watches
            table.setdefault(item.body[0], set()).add(conn.key)
            conn.watches.add((watch, item.body[0]))
        return reply(item.xid, zxid, err, body)

    # -- proposing --------------------------------------------------------------------

    def _propose_item(self, io: Io, item: Item) -> None:
        assert item.command is not None
        item.sent_at = io.now
        self._propose(io, [item.command])

    def _propose(self, io: Io, commands: list[bytes]) -> None:
        """Propose (leader) or forward to the leader; forwards of one call go out as one
        ``Forward`` in ``_flush``. Without a known leader nothing is sent: the
        retransmission on a leader change sends it."""
        leader = self.consensus.leader()
        if leader == self.node_id:
            try:
                for cmd in commands:
                    self.consensus.propose(io, cmd)
            except NotLeader:
                io.probe("zk.propose_not_leader")
        elif leader is not None:
            self._forwards.setdefault(leader, []).extend(commands)

    def _on_forward(self, io: Io, fwd: Forward) -> None:
        if self.consensus.leader() != self.node_id:
            io.probe("zk.forward_to_non_leader")
            return
        self._propose(io, fwd.commands)

    def _retransmit(self, io: Io) -> None:
        leader = self.consensus.leader()
        changed = leader != self._leader_seen
        self._leader_seen = leader
        if leader is None:
            return
        for conn in self.conns.values():
            waiting = [conn.connect] if conn.connect is not None else []
            waiting += [i for i in conn.queue if i.frame is None and i.command is not None]
            quiet_since = max(conn.progress_at, waiting[0].sent_at) if waiting else io.now
            if waiting and (changed or io.now - quiet_since >= RETRANSMIT_S):
                io.probe("zk.retransmit")
                for item in waiting:
                    item.sent_at = io.now
                self._propose(io, [i.command for i in waiting if i.command is not None])

    # -- LogApplier callbacks: applying the committed log -----------------------------

    def apply_committed(self, io: Io, index: int, command: bytes) -> None:
        self._apply(io, command, index)     # the zxid is the log index (``zxid_of``)

    def snapshot_state(self) -> bytes:
        return pack(self.tree.snapshot())

    def restore_state(self, data: bytes) -> None:
        self.tree.restore(unpack(data))
        if self._behind:
            release_behind(self)

    def leadership_changed(self, io: Io, leading: bool) -> None:
        if leading:
            # A new leader gives every session a full timeout before it may expire.
            self._touched = {sid: io.now for sid in self.tree.sessions}
            self._expiring.clear()

    def _apply(self, io: Io, raw: bytes, zxid: int) -> None:
        cmd = unpack(raw)
        result, events = self.tree.apply(cmd, zxid)
        fire(self, events)
        if self._behind:
            release_behind(self)
        kind = cmd[0]
        if kind in ("cs", "at"):
            on_session_result(self, io, cmd, result)
        elif kind == "cl":
            on_closed(self, cmd, result, zxid)
        elif result[0] not in ("dup", "gap"):
            conn = self.by_owner.get(cmd[4])
            if conn is not None:
                complete(self, conn, cmd[5], result, zxid)
            elif self._leading and cmd[1] != self.node_id:
                err, resp = result
                body = write_body(cmd[7], resp) if err == Err.OK else b""
                self._applied_out.setdefault(cmd[1], []).append(
                    [cmd[4], cmd[5], zxid, err, body])

    # -- connections ------------------------------------------------------------------

    def _send(self, key: tuple[str, int], frames: list[bytes], close: bool = False) -> None:
        self._out.setdefault(key, []).extend(frames)
        if close:
            self._close.add(key)

    def _flush(self, io: Io) -> None:
        for origin, results in self._applied_out.items():
            io.send(origin, Applied(results))
        self._applied_out.clear()
        for leader, commands in self._forwards.items():
            io.send(leader, Forward(commands))
        self._forwards.clear()
        ask_commit(self, io)
        for key in self._close - set(self._out):
            self._out[key] = []
        for key, frames in self._out.items():
            seq = self._tx_seq.get(key, 0) + 1
            self._tx_seq[key] = seq
            io.send(key[0], ServerFrames(key[1], seq, frames, key in self._close))
        for key in self._close:
            self._tx_seq.pop(key, None)
        self._out.clear()
        self._close.clear()

    def _drop_conn(self, key: tuple[str, int]) -> None:
        self._dead[key] = None
        while len(self._dead) > MAX_DEAD_CONNS:
            self._dead.popitem(last=False)
        conn = self.conns.pop(key, None)
        if conn is None:
            return
        self.by_owner.pop(conn.owner, None)
        for kind, path in conn.watches:
            table = self.data_watches if kind == "data" else self.child_watches
            holders = table.get(path)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del table[path]
