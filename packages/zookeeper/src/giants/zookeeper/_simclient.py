"""A simulated ZooKeeper client that speaks real jute frames (as kazoo does) to the
server cores in the deterministic simulator, and records what it saw for the checkers
in ``sim.py``.

It behaves like kazoo's connection state machine: one connection at a time; a ping
when idle for a third of the session timeout; a reconnect to the next server, with its
session id, password and last zxid, when nothing arrives for two thirds of it or the
server closes the connection; requests in flight at a disconnect are indefinite
(``info``); watches are forgotten at a reconnect (kazoo fires ``NONE`` to them); a
connect answered with timeout 0 means the session expired and a new one is opened.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from giants.core.envelope import Envelope
from giants.core.process import Io
from giants.zookeeper._jute import (
    PING_XID,
    STAT,
    WATCH_XID,
    Err,
    Event,
    Op,
    Reader,
    encode_connect,
    encode_request,
)
from giants.zookeeper._messages import ClientFrame, Hangup, ServerFrames
from giants.zookeeper._tree import OPEN_ACL

__all__ = ["SimZkClient", "Record", "REGISTERS", "MAX_IN_FLIGHT"]

REGISTERS = ("/r0", "/r1", "/r2")
MAX_IN_FLIGHT = 3
CONNECT_TIMEOUT_S = 1.0
SETUP = [(Op.CREATE, [p, b"", OPEN_ACL, 0]) for p in (*REGISTERS, "/e", "/m", "/final")]


@dataclass
class Record:
    """One request as the client saw it. ``status``: ok / fail / info (indefinite)."""

    client: str
    kind: str
    op: int
    path: str
    invoke_t: float
    value: bytes = b""
    xid: int = 0
    conn: int = 0
    status: str = "pending"
    err: int = 0
    zxid: int = 0
    ack_t: float = 0.0
    result: Any = None
    after_sync: float | None = None  # a get issued right behind a sync invoked then
    expected_zxid_floor: int = 0     # the client's last acknowledged write when issued
    watch: bool = False
    request: Any = None


@dataclass
class Violations:
    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.items.append(text)


class SimZkClient:
    """A ``Process`` for the simulator; see the module docstring."""

    def __init__(self, name: str, servers: list[str], *, ops: int, timeout_ms: int,
                 records: list[Record], violations: Violations, think_s: float) -> None:
        self.name = name
        self.servers = servers
        self.ops_left = ops
        self.timeout_ms = timeout_ms
        self.records = records
        self.violations = violations
        self.think_s = think_s
        self.server_i = 0
        self.conn = 0
        self.state = "down"
        self.sid = 0
        self.passwd = b"\0" * 16
        self.negotiated_ms = timeout_ms
        self.last_zxid = 0
        self.last_write_zxid = 0
        self.xid = 0
        self.outstanding: deque[Record] = deque()
        self.watches: dict[tuple[str, str], int] = {}
        self.ephemerals: set[str] = set()
        self.sessions: list[int] = []
        self.expired_sessions: list[int] = []
        self.final_events: list[str] = []
        self.script: deque[tuple[int, list[Any], str]] = deque(
            (op, body, "setup") for op, body in SETUP)
        self.n = 0
        self.tx_seq = 0
        self.rx_next = 1
        self.rx_held: dict[int, ServerFrames] = {}
        self.last_recv = 0.0
        self.last_send = 0.0
        self.connect_at = 0.0
        self.next_op_at = 0.0

    # -- Process ----------------------------------------------------------------------

    def start(self, io: Io) -> None:
        self.server_i = io.rng.randint(0, len(self.servers) - 1)
        self._connect(io)

    def tick(self, io: Io) -> None:
        now = io.now
        if self.state == "connecting" and now - self.connect_at > CONNECT_TIMEOUT_S:
            self._reconnect(io)
        elif self.state == "open":
            if now - self.last_recv > self.negotiated_ms * 2 / 3000:
                self._reconnect(io)
                return
            if now - self.last_send > self.negotiated_ms / 3000:
                self._send(io, encode_request(PING_XID, Op.PING, []))
            self._issue(io)

    def receive(self, io: Io, env: Envelope) -> None:
        body = env.body
        if not isinstance(body, ServerFrames) or body.conn != self.conn:
            return
        if env.source != self.servers[self.server_i] or self.state == "down":
            return
        if body.seq != self.rx_next:
            self.rx_held[body.seq] = body
            return
        while True:
            self.rx_next += 1
            conn = self.conn
            self._in_order(io, body)
            nxt = self.rx_held.pop(self.rx_next, None)
            if nxt is None or self.conn != conn:
                return
            body = nxt

    def _in_order(self, io: Io, body: ServerFrames) -> None:
        self.last_recv = io.now
        for frame in body.frames:
            if self.state == "connecting":
                self._on_connected(io, frame[4:])
            else:
                self._on_reply(io, frame[4:])
            if self.state == "down":
                return
        if body.close:
            self._reconnect(io)
        else:
            self._issue(io)

    # -- connection -------------------------------------------------------------------

    def _send(self, io: Io, frame: bytes) -> None:
        self.last_send = io.now
        self.tx_seq += 1
        io.send(self.servers[self.server_i], ClientFrame(self.conn, self.tx_seq, frame[4:]))

    def _connect(self, io: Io) -> None:
        self.conn += 1
        self.tx_seq = 0
        self.rx_next = 1
        self.rx_held = {}
        self.state = "connecting"
        self.connect_at = io.now
        self.last_recv = io.now
        self._send(io, encode_connect(self.last_zxid, self.timeout_ms, self.sid, self.passwd))

    def _reconnect(self, io: Io) -> None:
        io.send(self.servers[self.server_i], Hangup(self.conn))
        for rec in self.outstanding:
            rec.status = "info"
            if rec.kind == "delete_eph":
                self.ephemerals.discard(rec.path)  # it may or may not have happened
        # The layout (/r*, /e, /m, /final) must exist: setup requests are retried.
        self.script.extendleft(reversed([rec.request for rec in self.outstanding
                                         if rec.kind == "setup"]))
        self.outstanding.clear()
        self.watches.clear()
        self.server_i = (self.server_i + 1) % len(self.servers)
        self._connect(io)

    def _on_connected(self, io: Io, frame: bytes) -> None:
        r = Reader(frame)
        r.int()
        timeout, sid, passwd = r.int(), r.long(), r.buffer() or b""
        if timeout <= 0:
            # The ensemble expired our session: its ephemerals are gone; start afresh.
            if self.sid:
                self.expired_sessions.append(self.sid)
            self.sid, self.passwd = 0, b"\0" * 16
            self.ephemerals.clear()
            self.state = "down"
            self._connect(io)
            return
        if sid != self.sid:
            self.sessions.append(sid)
        self.sid, self.passwd, self.negotiated_ms = sid, passwd, timeout
        self.state = "open"

    # -- requests ---------------------------------------------------------------------

    def _issue(self, io: Io) -> None:
        while self.state == "open" and len(self.outstanding) < MAX_IN_FLIGHT:
            if not self.script:
                if self.ops_left <= 0 or io.now < self.next_op_at:
                    return
                self.ops_left -= 1
                self.next_op_at = io.now + self.think_s
                self._plan(io)
            op, body, kind = self.script.popleft()
            self._request(io, op, body, kind)

    def _plan(self, io: Io) -> None:
        self.n += 1
        rng = io.rng
        reg = rng.choice(REGISTERS)
        value = f"{self.name}:{self.n}".encode()
        roll = rng.random()
        if roll < 0.3:
            self.script.append((Op.SET_DATA, [reg, value, -1], "set"))
        elif roll < 0.45:
            self.script.append((Op.GET_DATA, [reg, rng.random() < 0.5], "get"))
        elif roll < 0.55:
            self.script.append((Op.SYNC, [reg], "sync"))
            self.script.append((Op.GET_DATA, [reg, False], "sync_get"))
        elif roll < 0.67:
            self.script.append((Op.CREATE, [f"/e/{self.name}-{self.n}", b"", OPEN_ACL, 1],
                                "create_eph"))
        elif roll < 0.75 and self.ephemerals:
            path = sorted(self.ephemerals)[rng.randint(0, len(self.ephemerals) - 1)]
            kind = "own_eph" if rng.random() < 0.5 else "delete_eph"
            if kind == "own_eph":
                self.script.append((Op.EXISTS, [path, True], kind))
            else:
                self.script.append((Op.DELETE, [path, -1], kind))
        elif roll < 0.85:
            self.script.append((Op.GET_CHILDREN, ["/e", True], "children"))
        else:
            sub = [[Op.CREATE, [f"/m/{self.name}-{self.n}", b"", OPEN_ACL, 0]],
                   [Op.SET_DATA, [reg, value, -1]]]
            self.script.append((Op.MULTI, sub, "multi"))

    def _request(self, io: Io, op: int, body: list[Any], kind: str) -> None:
        self.xid += 1
        path = body[0] if op != Op.MULTI else body[1][1][0]
        value = body[1] if op == Op.SET_DATA else (body[1][1][1] if op == Op.MULTI else b"")
        rec = Record(self.name, kind, op, path, io.now, value=value, xid=self.xid,
                     conn=self.conn, expected_zxid_floor=self.last_write_zxid,
                     watch=op in (Op.GET_DATA, Op.EXISTS, Op.GET_CHILDREN) and bool(body[1]))
        if kind == "sync_get" and self.records and self.records[-1].kind == "sync" \
                and self.records[-1].client == self.name:
            rec.after_sync = self.records[-1].invoke_t
        rec.request = (op, body, kind)
        self.records.append(rec)
        self.outstanding.append(rec)
        self._send(io, encode_request(self.xid, op, body))

    def _on_reply(self, io: Io, frame: bytes) -> None:
        r = Reader(frame)
        xid, zxid, err = r.int(), r.long(), r.int()
        if xid == WATCH_XID:
            self._on_event(r.int(), (r.int(), r.ustring() or "")[1])
            return
        if xid == PING_XID:
            return
        if not self.outstanding or self.outstanding[0].xid != xid:
            self.violations.add(f"{self.name}: reply xid {xid} out of request order")
            return
        rec = self.outstanding.popleft()
        rec.status = "ok" if err == Err.OK else "fail"
        rec.err, rec.zxid, rec.ack_t = err, zxid, io.now
        if zxid > 0:
            self.last_zxid = max(self.last_zxid, zxid)
        if err == Err.SESSION_EXPIRED:
            rec.status = "info"
        self._account(rec, r)

    def _account(self, rec: Record, r: Reader) -> None:
        op, err = rec.op, rec.err
        if op in (Op.SET_DATA, Op.CREATE, Op.DELETE, Op.MULTI) and rec.status == "ok":
            if rec.zxid <= self.last_write_zxid:
                self.violations.add(f"{self.name}: write zxid {rec.zxid:#x} not after "
                                    f"the client's previous write {self.last_write_zxid:#x}")
            self.last_write_zxid = rec.zxid
        if rec.status == "ok" and op not in (Op.SET_DATA, Op.CREATE, Op.DELETE, Op.MULTI, Op.SYNC) \
                and rec.zxid < rec.expected_zxid_floor:
            self.violations.add(f"{self.name}: read at zxid {rec.zxid:#x} older than its own "
                                f"write {rec.expected_zxid_floor:#x}")
        if op == Op.GET_DATA and err == Err.OK:
            data = r.buffer() or b""
            stat = STAT.unpack(r._take(STAT.size))
            rec.result = (data, stat[1])
            self._observed(rec.path, stat[1])
        elif op == Op.EXISTS:
            if err == Err.OK:
                stat = STAT.unpack(r._take(STAT.size))
                self._observed(rec.path, stat[1])
            if rec.kind == "own_eph" and err == Err.NO_NODE and rec.path in self.ephemerals:
                self.violations.add(f"{self.name}: own ephemeral {rec.path} vanished while "
                                    f"its session {self.sid:#x} is alive")
        elif op == Op.CREATE and rec.kind == "create_eph" and err == Err.OK:
            self.ephemerals.add(rec.path)
        elif op == Op.DELETE and err in (Err.OK, Err.NO_NODE):
            self.ephemerals.discard(rec.path)
        if rec.status == "ok" or (op == Op.EXISTS and err == Err.NO_NODE):
            watch = self._watch_kind(rec)
            if watch is not None:
                self.watches[(watch, rec.path)] = rec.zxid

    @staticmethod
    def _watch_kind(rec: Record) -> str | None:
        if not rec.watch:
            return None
        if rec.kind in ("get", "own_eph", "final") and rec.op in (Op.GET_DATA, Op.EXISTS):
            return "data"
        if rec.kind == "children":
            return "child"
        return None

    def _observed(self, path: str, mzxid: int) -> None:
        reg = self.watches.get(("data", path))
        if reg is not None and mzxid > reg:
            self.violations.add(f"{self.name}: a read saw {path} changed at {mzxid:#x} before "
                                f"the watch registered at {reg:#x} fired")

    def _on_event(self, etype: int, path: str) -> None:
        kinds = {Event.CREATED: ("data",), Event.DATA_CHANGED: ("data",),
                 Event.DELETED: ("data", "child"), Event.CHILDREN_CHANGED: ("child",)}[etype]
        hit = [k for k in kinds if (k, path) in self.watches]
        if not hit:
            self.violations.add(f"{self.name}: watch event {etype} on {path} without a "
                                "live registration (spurious or fired twice)")
        for k in hit:
            del self.watches[(k, path)]
        if path.startswith("/final/"):
            self.final_events.append(path)

    # -- driven by the simulation's final phase ---------------------------------------

    def register_final(self, io: Io) -> None:
        self.script.append((Op.EXISTS, [f"/final/{self.name}", True], "final"))
        self._issue(io)

    def create_finals(self, io: Io, names: list[str]) -> None:
        for name in names:
            self.script.append((Op.CREATE, [f"/final/{name}", b"", OPEN_ACL, 0], "final_create"))
        self._issue(io)

    def idle(self) -> bool:
        return self.state == "open" and not self.outstanding and not self.script

    def final_registered(self) -> bool:
        return ("data", f"/final/{self.name}") in self.watches
