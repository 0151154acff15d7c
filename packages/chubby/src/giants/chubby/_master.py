"""A Chubby cell replica: the sans-I/O master/replica core stacked over a consensus core
(Burrows, OSDI 2006, §2.1 "System structure", §2.8 "Sessions and KeepAlives",
§2.9 "Caching", §2.12 "Fail-overs").

Every replica applies the consensus log to its ``Namespace``. The **master** is the
consensus leader once its own ``epoch`` entry has committed: that entry gives the cell a
new master epoch and, being applied after every earlier entry, means the master's
database is complete. Only the master answers clients; other replicas answer
``WhereIsMaster`` and refuse the rest with ``NotLeader(hint)``. Reads are answered after
a consensus read barrier (the master lease of the paper, realised as ReadIndex: the
master confirms it is still leader before answering from its database).

Master-only (volatile) state, rebuilt on take-over:

* **Session leases.** A ``KeepAlive`` is held until the session's lease is within
  ``keepalive_margin_s`` of its end, or an event is due; the reply extends the lease by
  ``lease_s`` and carries the pending events. A session whose lease ran out with no
  KeepAlive held is expired through the log (its locks are released, exclusive ones
  under lock-delay; its ephemeral nodes go).
* **Cache invalidation.** The master remembers which sessions cache which path (those it
  answered with ``cacheable=True``). A modification of a path first sends an
  ``invalidate`` event to every other caching session and is proposed only when each
  acknowledged it (via its next KeepAlive) or was expired; meanwhile the path is
  uncachable. After a fail-over every session must acknowledge the ``failover`` event
  (on which the client flushes its whole cache) before any modification proceeds.
* **Blocking Acquire** waits at the master until the lock looks free and any lock-delay
  has passed; holders subscribed to ``conflict`` hear about the waiter.
* On take-over (§2.12): every session's lease is set to a full ``lease_s`` from now
  (the new master cannot know the old one's promises, so it assumes the longest), a
  ``failover`` event is queued for every session, and every delayed lock is delayed
  afresh. Requests carrying an older epoch are refused (``reason="old_epoch"``).

The consensus log is applied (snapshots, index order, compaction, read barriers,
leadership edges) by ``giants.core.stacked.LogApplier``; this class supplies its
callbacks.

Ordering contract (the host enforces it): a call's persists (consensus log, snapshot)
are durable before its messages leave; clients are answered only for applied commands.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from giants.chubby._cell import (
    CACHED_OPS,
    MAX_EVENTS_PER_SESSION,
    MAX_USER_CHARS,
    CellOptions,
    Modification,
    cached_stat,
    command_key,
    error_of,
    pack,
    unpack,
)
from giants.chubby._lockwait import LockWaiting
from giants.chubby._messages import (
    READ_OPS,
    Call,
    CallResult,
    CreateSession,
    KeepAlive,
    KeepAliveReply,
    MasterInfo,
    SessionInfo,
    WhereIsMaster,
)
from giants.chubby._namespace import Namespace, call_digest, validate_call, validate_path
from giants.core.consensus import ConsensusConfig, ConsensusCore, ConsensusFactory
from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import (
    DefiniteError,
    NotLeader,
    Rejected,
    Unavailable,
)
from giants.core.process import Durable, Io
from giants.core.stacked import LogApplier

__all__ = ["CellOptions", "ChubbyReplica", "CACHED_OPS"]

# A read waiting for its barrier: a client's call, or KeepAlive replies (sessions, and
# when the barrier started).
_Read = tuple[Envelope, Call] | tuple[tuple[int, ...], float]


class ChubbyReplica(LockWaiting):
    """One replica of a Chubby cell (a ``Process``). See the module docstring."""

    def __init__(self, consensus_factory: ConsensusFactory, config: ConsensusConfig,
                 durable: Durable, options: CellOptions | None = None) -> None:
        self.node_id = config.node_id
        self.opts = options or CellOptions()
        self.consensus: ConsensusCore = consensus_factory(config, durable)
        self.applier: LogApplier[_Read] = LogApplier(
            self.consensus, self, snapshot_every=self.opts.snapshot_every, reads=self)
        self.db = Namespace(self.opts.cell)
        self.stint = 0
        self.active = False
        self._reset_master_state()

    def _reset_master_state(self) -> None:
        self.lease_end: dict[int, float] = {}
        self.held: dict[int, tuple[Envelope, float]] = {}
        self.answering: set[int] = set()
        self.events: dict[int, list[list[Any]]] = {}
        self.event_seq: dict[int, int] = {}
        self.cachers: dict[str, set[int]] = {}
        self.busy: Counter[str] = Counter()
        self.blocked: list[Modification] = []
        self.unacked_failover: dict[int, int] = {}
        self.pending: dict[tuple[Any, ...], tuple[Envelope | None, list[str], str]] = {}
        self.creating: dict[str, Envelope] = {}
        self.expiring: set[int] = set()
        self.parked: dict[str, list[tuple[Envelope, Call]]] = {}
        self.parked_at: dict[int, str] = {}
        # per session: the newest write received (seq, call_digest), and its answer if
        # that was given without the log (a refused try_acquire); see _on_write
        self.newest: dict[int, tuple[int, int, CallResult | ErrorReply | None]] = {}
        self.acquiring: Counter[str] = Counter()
        self.delay_until: dict[str, float] = {}
        self.applier.forget_reads()

    # -- Process ----------------------------------------------------------------------

    def start(self, io: Io) -> None:
        self.applier.start(io)

    def tick(self, io: Io) -> None:
        self.applier.tick(io)
        if self.active:
            self._master_tick(io)

    def receive(self, io: Io, env: Envelope) -> None:
        body = env.body
        if isinstance(body, WhereIsMaster):
            members = self.consensus.members()
            leader = self.consensus.leader()
            io.reply(env, MasterInfo(leader, self.db.epoch, dict(members.voters)))
        elif isinstance(body, (CreateSession, KeepAlive, Call)):
            try:
                self._client_request(io, env, body)
            except DefiniteError as exc:
                io.reply(env, ErrorReply.definite(exc))
        elif not self.applier.receive(io, env):
            io.reply(env, ErrorReply.protocol(f"unexpected message {type(body).__name__}"))
            return
        self.applier.drain(io)

    # -- client requests (master only) ------------------------------------------------

    def _client_request(self, io: Io, env: Envelope, body: Any) -> None:
        leader = self.consensus.leader()
        if leader != self.node_id:
            raise NotLeader(hint=leader)
        if not self.active:
            raise Unavailable("master take-over in progress", reason="takeover")
        if isinstance(body, CreateSession):
            if not body.user or len(body.user) > MAX_USER_CHARS or len(body.nonce) > 64:
                raise Rejected("bad user name or nonce", reason="bad_args")
            self.creating[body.nonce] = env
            self._propose(io, ["create_session", body.user, body.nonce])
            return
        if body.session not in self.db.sessions or body.session in self.expiring:
            raise Rejected(f"session {body.session} expired", reason="session_expired")
        if isinstance(body, KeepAlive):
            self._on_keepalive(io, env, body)
            return
        if body.epoch != self.db.epoch:
            raise Rejected(f"old master epoch {body.epoch}", reason="old_epoch",
                           epoch=self.db.epoch)
        validate_call(body.op, body.args, self.opts.cell)
        if body.op in READ_OPS:
            self.applier.read_barrier(io, (env, body))
        else:
            self._on_write(io, env, body)

    def _on_keepalive(self, io: Io, env: Envelope, ka: KeepAlive) -> None:
        sid = ka.session
        queue = self.events.setdefault(sid, [])
        acked = [e for e in queue if e[0] <= ka.ack] if ka.epoch == self.db.epoch else []
        if acked:
            queue[:] = [e for e in queue if e[0] > ka.ack]
            if self.unacked_failover.get(sid, 1 << 62) <= ka.ack:
                del self.unacked_failover[sid]
            self._acknowledged(io, sid, ka.ack)
        self.held[sid] = (env, io.now)
        if queue or ka.epoch != self.db.epoch:
            self._answer_keepalives(io, [sid])

    def _answer_keepalives(self, io: Io, sids: list[int]) -> None:
        """Confirm we still lead (one read barrier for all of ``sids``) before promising
        leases: a newer master takes over only after a quorum left our term, which is
        after the barrier started, so ``started + lease_s`` is within the lease the
        newer master grants."""
        due = tuple(sid for sid in sids if sid not in self.answering)
        if not due:
            return
        try:
            self.applier.read_barrier(io, (due, io.now))
        except NotLeader:
            return
        self.answering.update(due)

    def _send_keepalive(self, io: Io, sid: int, started: float) -> None:
        self.answering.discard(sid)
        held = self.held.pop(sid, None)
        if held is None or sid not in self.db.sessions:
            return
        env, received = held
        end = started + self.opts.lease_s
        self.lease_end[sid] = end
        io.reply(env, KeepAliveReply(self.db.epoch, end - received,
                                     list(self.events.get(sid, []))))

    def _on_write(self, io: Io, env: Envelope, call: Call) -> None:
        """A client sends its writes one at a time in ``seq`` order, re-sending the
        same call (same ``seq``, same ``call_digest``) until answered, so a newer
        ``seq`` means it is done with the older ones: an older call arriving late is
        refused without effect (``superseded``; so is a different call reusing a seq,
        from a second client on an adopted session), and an older acquire still
        parked here is dropped (it never wins behind the client's back). An answer
        given without the log is remembered for a re-sent copy."""
        session = self.db.sessions[call.session]
        key = ("op", call.session, call.seq)            # as command_key names it
        digest = call_digest(call.op, call.args)
        if call.seq == session.last_seq and digest == session.last_call:
            io.probe("chubby.retry_answered_from_session")
            self._reply_result(io, env, session.last_result, False)
            return
        newest, newest_digest, direct = self.newest.get(call.session, (0, 0, None))
        if (call.seq <= session.last_seq or call.seq < newest
                or (call.seq == newest and digest != newest_digest)):
            io.probe("chubby.superseded_call_refused")
            io.reply(env, ErrorReply.definite(Rejected(
                f"call {call.seq} superseded by a newer call of the session",
                reason="superseded", newest=max(newest, session.last_seq))))
            return
        if call.seq == newest and direct is not None:
            io.reply(env, direct)
            return
        self.newest[call.session] = (call.seq, digest, None)
        self._withdraw_parked(io, call)
        if key in self.pending:
            _old, paths, lock_path = self.pending[key]
            self.pending[key] = (env, paths, lock_path)
            return
        for m in self.blocked:
            if m.command[1:3] == [call.session, call.seq]:
                m.env = env
                return
        if call.op == "acquire" and self._must_wait(call, io.now):
            self._park(io, env, call)
            return
        if call.op == "try_acquire" and self._must_wait(call, io.now):
            refused = CallResult([False, None], False)
            self.newest[call.session] = (call.seq, digest, refused)
            io.reply(env, refused)
            return
        paths = self._modified_paths(call)
        clear = call.op in ("acquire", "try_acquire")
        self._modify(io, env, ["op", call.session, call.seq, call.op, call.args, clear], paths,
                     call.session)

    def _modified_paths(self, call: Call) -> list[str]:
        """Cached paths this call may change (cached data excludes lock state)."""
        if call.op == "open":
            return [call.args[0]] if call.args[2] and call.args[0] not in self.db.nodes else []
        h = self.db.handles.get(call.args[0]) if call.args else None
        if call.op == "end_session":
            return self._ephemeral_paths(call.session)
        if h is None or call.op not in ("write", "delete", "set_acl", "close"):
            return []
        node = self.db.nodes.get(h.path)
        if call.op == "close" and (node is None or not node.ephemeral):
            return []
        return [h.path]

    def _ephemeral_paths(self, sid: int) -> list[str]:
        out = []
        for hid in self.db.sessions[sid].handles:
            h = self.db.handles[hid]
            node = self.db.nodes.get(h.path)
            if node is not None and node.ephemeral and node.instance == h.instance:
                out.append(h.path)
        return sorted(set(out))

    def _modify(self, io: Io, env: Envelope | None, command: list[Any], paths: list[str],
                writer: int) -> None:
        """Invalidate every other cache of ``paths``, then propose ``command``."""
        waiting = {s: seq for s, seq in self.unacked_failover.items() if s != writer}
        for path in paths:
            self.busy[path] += 1
            for sid in sorted(self.cachers.pop(path, set())):
                if sid != writer and sid in self.db.sessions:
                    waiting[sid] = self._queue_event(io, sid, ["invalidate", path, "", 0])
        for earlier in self.blocked:
            # an invalidation still outstanding for one of our paths holds us back too
            if set(earlier.paths) & set(paths):
                for sid, seq in earlier.waiting.items():
                    if sid != writer:
                        waiting[sid] = max(waiting.get(sid, 0), seq)
        m = Modification(env, command, paths, waiting)
        if waiting:
            io.trace("invalidate", command=command[:4], waiting=sorted(waiting.items()))
            io.probe("chubby.write_waits_for_invalidation")
            self.blocked.append(m)
        else:
            self._launch(io, m)

    def _launch(self, io: Io, m: Modification) -> None:
        lock_path = ""
        if m.command[0] == "op" and m.command[3] in ("acquire", "try_acquire"):
            h = self.db.handles.get(m.command[4][0])
            if h is not None:
                lock_path = h.path
                self.acquiring[lock_path] += 1
        io.trace("propose", command=m.command[:4], paths=m.paths)
        self.pending[command_key(m.command)] = (m.env, m.paths, lock_path)
        self._propose(io, m.command)

    def _acknowledged(self, io: Io, sid: int, ack: int) -> None:
        still = []
        for m in self.blocked:
            if m.waiting.get(sid, 1 << 62) <= ack:
                del m.waiting[sid]
            if not m.waiting:
                self._launch(io, m)
            else:
                still.append(m)
        self.blocked = still

    def _propose(self, io: Io, command: list[Any]) -> None:
        try:
            self.consensus.propose(io, pack(command))
        except NotLeader:
            io.probe("chubby.propose_not_leader")

    # -- master timers ----------------------------------------------------------------

    def _master_tick(self, io: Io) -> None:
        now = io.now
        margin = self.opts.keepalive_margin_s
        self._answer_keepalives(io, [
            sid for sid in sorted(self.held)
            if self.events.get(sid) or self.lease_end.get(sid, 0.0) - now <= margin])
        for sid in sorted(self.db.sessions):
            if (sid not in self.held and sid not in self.expiring
                    and self.lease_end.get(sid, 0.0) < now):
                io.probe("chubby.session_lease_expired")
                io.trace("session_expire", session=sid)
                self.expiring.add(sid)
                self._modify(io, None, ["expire_session", sid], self._ephemeral_paths(sid), sid)
        for path, until in sorted(self.delay_until.items()):
            if until <= now and path in self.parked:
                self._wake(io, path)

    def _queue_event(self, io: Io, sid: int, event: list[Any]) -> int:
        queue = self.events.setdefault(sid, [])
        if len(queue) >= MAX_EVENTS_PER_SESSION:
            # A client this far behind is told to drop its whole cache instead.
            io.probe("chubby.event_queue_full")
            del queue[: len(queue) // 2]
            event = ["flush", "", "", 0]
        seq = self.event_seq.get(sid, 0) + 1
        self.event_seq[sid] = seq
        queue.append([seq, *event])
        return seq

    # -- LogApplier callbacks: applying what consensus decided -----------------------

    def apply_committed(self, io: Io, index: int, command: bytes) -> None:
        self._apply(io, unpack(command))

    def snapshot_state(self) -> bytes:
        return pack(self.db.snapshot())

    def restore_state(self, data: bytes) -> None:
        self.db.restore(unpack(data))

    def leadership_changed(self, io: Io, leading: bool) -> None:
        if leading:
            self.stint += 1
            io.trace("master_candidate", stint=self.stint)
            self._propose(io, ["epoch", self.node_id, self.stint])
            return
        if self.active:
            io.trace("master_deposed", epoch=self.db.epoch)
        self.active = False
        self._reset_master_state()

    def _apply(self, io: Io, cmd: list[Any]) -> None:
        result, effects = self.db.apply(cmd)
        if cmd[0] == "epoch":
            if cmd[1:] == [self.node_id, self.stint] and self.consensus.leader() == self.node_id:
                self._take_over(io)
            return
        if not self.active:
            return
        for sid, event in effects:
            if sid == 0:
                self.delay_until[event[1]] = io.now + self.opts.lock_delay_s
            elif sid in self.db.sessions:
                self._queue_event(io, sid, event)
        if cmd[0] == "create_session":
            self.lease_end.setdefault(result, io.now + self.opts.lease_s)
            env = self.creating.pop(cmd[2], None)
            if env is not None:
                io.reply(env, SessionInfo(result, self.db.epoch, self.opts.lease_s))
            return
        env, paths, lock_path = self.pending.pop(command_key(cmd), (None, [], ""))
        for path in paths:
            self.busy[path] -= 1
        if lock_path:
            self.acquiring[lock_path] -= 1
        if env is not None:
            self._reply_result(io, env, result, False)
        if cmd[0] == "expire_session" or (cmd[0] == "op" and cmd[3] == "end_session"):
            self._forget_session(io, cmd[1])
        for path in sorted(self.parked):
            self._wake(io, path)

    def _forget_session(self, io: Io, sid: int) -> None:
        for mapping in (self.lease_end, self.held, self.events, self.unacked_failover,
                        self.newest):
            mapping.pop(sid, None)
        self.expiring.discard(sid)
        for cachers in self.cachers.values():
            cachers.discard(sid)
        for m in self.blocked:
            m.waiting.pop(sid, None)
        self._acknowledged(io, sid, 0)

    def _take_over(self, io: Io) -> None:
        self._reset_master_state()
        self.active = True
        io.trace("master_active", epoch=self.db.epoch, sessions=len(self.db.sessions))
        for sid in sorted(self.db.sessions):
            self.lease_end[sid] = io.now + self.opts.lease_s
            self.unacked_failover[sid] = self._queue_event(
                io, sid, ["failover", "", str(self.db.epoch), 0])
        for path, node in sorted(self.db.nodes.items()):
            if node.delayed:
                self.delay_until[path] = io.now + self.opts.lock_delay_s

    # -- answers ----------------------------------------------------------------------

    def serve_read(self, io: Io, read: _Read) -> None:
        if isinstance(read[0], tuple):
            for sid in read[0]:
                self._send_keepalive(io, sid, read[1])
            return
        env, call = read
        assert isinstance(call, Call)
        try:
            result, cacheable = self._query(call)
        except DefiniteError as exc:
            io.reply(env, ErrorReply.definite(exc))
            return
        io.reply(env, CallResult(result, cacheable))

    def fail_read(self, io: Io, read: _Read) -> None:
        if isinstance(read[0], tuple):
            self.answering.difference_update(read[0])    # asked again next tick
        else:
            io.reply(read[0], ErrorReply.definite(NotLeader(hint=self.consensus.leader())))

    def _query(self, call: Call) -> tuple[Any, bool]:
        if call.op == "lookup":
            path = validate_path(call.args[0], self.opts.cell)
            node = self.db.nodes.get(path)
            result: Any = None if node is None else cached_stat(node.stat())
        else:
            result = self.db.query(call.session, call.op, call.args)
            if call.op != "read":
                return result, False
            path = self.db.handles[call.args[0]].path
            result = [result[0], cached_stat(result[1])]
        cacheable = (not self.busy[path] and call.session in self.db.sessions
                     and call.session not in self.unacked_failover)
        if cacheable:
            self.cachers.setdefault(path, set()).add(call.session)
        return result, cacheable

    def _reply_result(self, io: Io, env: Envelope, result: Any, cacheable: bool) -> None:
        if isinstance(result, dict) and "error" in result:
            exc = error_of(result)
            io.reply(env, ErrorReply.definite(exc))
        else:
            io.reply(env, CallResult(result, cacheable))


