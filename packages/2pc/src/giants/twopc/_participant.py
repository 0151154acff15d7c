"""The 2PC participant (resource manager): one shard of the transactional KV.

Gray 1978 §5.8.3.3 and R* (Mohan, Lindsay, Obermarck 1986) §2 for the protocol;
Bernstein, Hadzilacos, Goodman 1987 §7.4 for the termination protocol.

Execution phase: ``TxnRead`` / ``TxnWrite`` take a shared / exclusive row lock in the
shard's ``LockManager`` (giants-2pl; table ``"kv"``, row = key) and are answered when the
lock is granted; writes are buffered in memory. Locks are held until the outcome (strict
two-phase locking), so committed transactions are serializable in commit order.

Rules (the order of each step is the order of the code, and the host persists a call's
``io.put``s before its messages leave):

* **Vote**: on ``Prepare`` an active transaction with writes *persists its PREPARED
  record* (writes, coordinators, participants) and only then votes YES. One with no
  writes votes READ-ONLY, releases its locks and forgets the transaction (the read-only
  optimisation: no phase 2 here). Anything else -- unknown (never seen, or lost in a
  crash before it prepared), aborted, or an operation still waiting for a lock -- votes NO.
* **Unilateral abort only before YES**: an active transaction idle for
  ``active_timeout_s`` is aborted (its client is gone); a deadlock victim is aborted; a
  prepared transaction is never aborted by this node, whatever the timeouts.
* **Outcome**: ``Decision`` applies (commit: the buffered writes) and durably records
  the outcome, deletes the PREPARED record, releases the locks and ACKs. Duplicates are
  ACKed again; a COMMIT for a transaction that never prepared here and a decision that
  contradicts a recorded outcome are refused, changing nothing.
* **In doubt**: a prepared transaction without a decision after ``query_after_s`` asks
  the coordinators (``QueryOutcome``) and keeps asking every ``retry_s``; after
  ``blocked_after_s`` it declares itself **blocked** (trace ``blocked``, probe
  ``2pc.participant_blocked``, visible in ``StatusReply``) and runs cooperative
  termination: it asks every other participant (``PeerQuery``) and adopts an outcome
  any peer knows. A peer that has not voted aborts and says so; a prepared peer is in
  doubt too; a peer with no record says ``unknown`` (it cannot tell "never voted" from
  "voted READ-ONLY and forgot").
* **Recovery**: on restart every PREPARED record is rebuilt with its exclusive locks
  re-taken, and the coordinators are asked at once. Active (unprepared) transactions
  were in memory only: they are gone, and a later ``Prepare`` for them votes NO.

Durable layout: ``kv`` (key -> value), ``2pc.prepared`` (txn -> record), the outcome
cache ``2pc.done`` (see ``_outcomes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import DefiniteError, Rejected, TxnAborted, Unavailable
from giants.core.process import Durable, Io
from giants.twopc._messages import (
    VOTE_NO,
    VOTE_READ_ONLY,
    VOTE_YES,
    AbortVictim,
    Ack,
    Decision,
    PeerQuery,
    PeerState,
    Prepare,
    QueryOutcome,
    ReadResult,
    RollbackAck,
    StatusQuery,
    StatusReply,
    TxnRead,
    TxnRollback,
    TxnWrite,
    Vote,
    WaitsFor,
    WriteAck,
)
from giants.twopc._outcomes import OutcomeCache
from giants.twopl import Aborted, DeadlockPolicy, Granted, LockManager, LockMode

__all__ = ["Participant", "ParticipantOptions", "KV_NS", "PREPARED_NS", "DONE_NS"]

KV_NS = "kv"
PREPARED_NS = "2pc.prepared"
DONE_NS = "2pc.done"
TABLE = "kv"
# "detect": the lock-wait timeout behind the global detector (see ParticipantOptions).
DETECT_BACKSTOP_S = 3.0
# Bounded so one client cannot wedge a shard with giant keys or values.
MAX_KEY_BYTES = 4096
MAX_VALUE_BYTES = 1024 * 1024


@dataclass
class ParticipantOptions:
    deadlock: str = "wound-wait"
    lock_wait_timeout_s: float | None = None   # backstop; "detect" defaults to 3 s
    active_timeout_s: float = 5.0
    query_after_s: float = 0.3
    blocked_after_s: float = 1.0
    retry_s: float = 0.2
    max_active: int = 1000                     # concurrent transactions per shard
    # "detect" only: report the local waits-for graph to these coordinator nodes, whose
    # global detector breaks cycles that span shards (empty: local detection only)
    detector: list[str] = field(default_factory=list)
    report_every_s: float = 0.05

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParticipantOptions:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class _Txn:
    txn: str
    ts: float
    state: str = "active"                      # active | prepared
    writes: dict[str, tuple[Any, bool]] = field(default_factory=dict)
    seq: int = 0                               # the last operation accepted
    pending: Envelope | None = None
    last_active: float = 0.0
    coordinators: list[str] = field(default_factory=list)
    participants: list[str] = field(default_factory=list)
    prepared_at: float = 0.0
    last_query: float = -1e18
    blocked: bool = False


class Participant:
    """A ``Process``: one shard. See the module docstring."""

    def __init__(self, node_id: str, durable: Durable,
                 options: ParticipantOptions | None = None) -> None:
        self.node_id = node_id
        self.options = options or ParticipantOptions()
        timeout = self.options.lock_wait_timeout_s
        if timeout is None and self.options.deadlock == "detect":
            # a backstop only: cross-shard cycles are broken by the coordinator's global
            # detector; this catches lost reports without aborting long legitimate waits
            timeout = DETECT_BACKSTOP_S
        self.locks = LockManager(self.options.deadlock, wait_timeout_s=timeout)
        self.data: dict[str, Any] = {str(k): v for k, v in durable.items(KV_NS)}
        self.done = OutcomeCache(durable, DONE_NS)
        self._txns: dict[str, _Txn] = {}
        self._recovered: list[tuple[str, dict[str, Any]]] = [
            (str(k), v) for k, v in durable.items(PREPARED_NS)]
        self._reported: dict[str, list[str]] = {}
        self._reported_at = -1e18

    # -- Process ------------------------------------------------------------------------

    def start(self, io: Io) -> None:
        for txn, rec in self._recovered:
            t = _Txn(txn, float(rec["ts"]), "prepared",
                     {k: (v, bool(d)) for k, v, d in rec["writes"]},
                     coordinators=list(rec["coordinators"]),
                     participants=list(rec["participants"]), prepared_at=io.now)
            self.locks.begin(txn, t.ts)
            for key in t.writes:
                assert self.locks.lock(txn, (TABLE, key), LockMode.X) == "granted", (
                    f"{self.node_id}: prepared transactions conflict on {key}")
            self.locks.mark_prepared(txn)
            self._txns[txn] = t
            io.trace("recovered_prepared", txn=txn)
            self._query(io, t)
        self._recovered = []

    def receive(self, io: Io, env: Envelope) -> None:
        body = env.body
        if isinstance(body, (TxnRead, TxnWrite)):
            self._on_op(io, env)
        elif isinstance(body, Prepare):
            self._on_prepare(io, env, body)
        elif isinstance(body, Decision):
            self._on_decision(io, env, body)
        elif isinstance(body, PeerQuery):
            self._on_peer_query(io, env, body)
        elif isinstance(body, PeerState):
            self._on_peer_state(io, body)
        elif isinstance(body, TxnRollback):
            self._on_rollback(io, env, body)
        elif isinstance(body, AbortVictim):
            t = self._txns.get(body.txn)
            if t is not None and t.state == "active":
                io.probe("2pc.global_deadlock_victim")
                self._abort_active(io, body.txn, body.reason)
        elif isinstance(body, StatusQuery):
            io.reply(env, self.status(io.now))
        elif env.in_reply_to is None:
            io.reply(env, ErrorReply.protocol(f"a participant does not take {type(body).__name__}"))
        self._drain_locks(io)

    def tick(self, io: Io) -> None:
        now = io.now
        self.locks.tick(now)
        self._drain_locks(io)
        opts = self.options
        for t in list(self._txns.values()):
            if t.state == "active":
                if t.pending is None and now - t.last_active >= opts.active_timeout_s:
                    io.probe("2pc.participant_idle_abort")
                    self._abort_active(io, t.txn, "idle too long before prepare")
                continue
            in_doubt = now - t.prepared_at
            if in_doubt < opts.query_after_s or now - t.last_query < opts.retry_s:
                continue
            self._query(io, t)
            if in_doubt >= opts.blocked_after_s:
                if not t.blocked:
                    t.blocked = True
                    io.trace("blocked", txn=t.txn, in_doubt_s=round(in_doubt, 3))
                    io.probe("2pc.participant_blocked")
                for peer in t.participants:
                    if peer != self.node_id:
                        io.send(peer, PeerQuery(t.txn, self.node_id))
        self._drain_locks(io)
        self._report_waits(io)

    def _report_waits(self, io: Io) -> None:
        """Send the local waits-for graph to the global detector when it changed (and
        again every ``report_every_s`` while it is not empty)."""
        if not self.options.detector or self.locks.policy is not DeadlockPolicy.DETECT:
            return
        graph = {t: sorted(w) for t, w in self.locks.waits_for().items()}
        stale = io.now - self._reported_at >= self.options.report_every_s
        if graph == self._reported and not (graph and stale):
            return
        self._reported, self._reported_at = graph, io.now
        names = set(graph) | {w for ws in graph.values() for w in ws}
        ts = {t: self._txns[t].ts for t in names if t in self._txns}
        for c in self.options.detector:
            io.send(c, WaitsFor(self.node_id, graph, ts))

    # -- execution phase ----------------------------------------------------------------

    def _on_op(self, io: Io, env: Envelope) -> None:
        body = env.body
        known = self._txns.get(body.txn)
        if known is not None and body.seq <= known.seq:
            io.probe("2pc.duplicate_op_ignored")        # a retransmitted or duplicated op
            return
        try:
            t = self._txn_for_op(io, body)
            mode = LockMode.S if isinstance(body, TxnRead) else LockMode.X
            status = self.locks.lock(body.txn, (TABLE, body.key), mode, io.now)
        except TxnAborted as exc:
            self._abort_active(io, body.txn, str(exc))
            io.reply(env, ErrorReply.definite(exc))
            return
        except DefiniteError as exc:
            io.reply(env, ErrorReply.definite(exc))
            return
        t.last_active = io.now
        if status == "granted":
            self._complete(io, env, t)
        else:
            t.pending = env

    def _txn_for_op(self, io: Io, body: TxnRead | TxnWrite) -> _Txn:
        """The transaction an operation belongs to, begun if new. Raises a definite
        error (nothing changed) when the operation must be refused."""
        if not body.key or len(body.key.encode()) > MAX_KEY_BYTES:
            raise Rejected(f"a key is 1..{MAX_KEY_BYTES} bytes")
        if isinstance(body, TxnWrite) and isinstance(body.value, (bytes, str)) and \
                len(body.value) > MAX_VALUE_BYTES:
            raise Rejected(f"value larger than {MAX_VALUE_BYTES} bytes")
        known = self.done.get(body.txn)
        if known is not None:
            raise (Rejected(f"{body.txn} already committed") if known
                   else TxnAborted(f"{body.txn} already aborted"))
        t = self._txns.get(body.txn)
        if t is None:
            if len(self._txns) >= self.options.max_active:
                raise Unavailable(f"{self.node_id}: {len(self._txns)} transactions active")
            self.locks.begin(body.txn, body.ts)         # raises TxnAborted if it was aborted
            t = _Txn(body.txn, body.ts, last_active=io.now)
            self._txns[body.txn] = t
        if t.state != "active":
            raise Rejected(f"{body.txn} is prepared: no further operations")
        if t.pending is not None:
            raise Rejected(f"{body.txn} already has an operation in flight")
        if body.seq != t.seq + 1:
            io.probe("2pc.lost_operations")
            raise TxnAborted(f"{body.txn}: operation {body.seq} arrived after {t.seq}: "
                             "earlier operations were lost (a restart?)")
        t.seq = body.seq
        return t

    def _complete(self, io: Io, env: Envelope, t: _Txn) -> None:
        body = env.body
        if isinstance(body, TxnWrite):
            t.writes[body.key] = (None if body.delete else body.value, body.delete)
            io.reply(env, WriteAck(body.txn, body.key))
            return
        if body.key in t.writes:
            value, deleted = t.writes[body.key]
            io.reply(env, ReadResult(body.txn, body.key, not deleted, value))
        else:
            io.reply(env, ReadResult(body.txn, body.key, body.key in self.data,
                                     self.data.get(body.key)))

    def _drain_locks(self, io: Io) -> None:
        for ev in self.locks.take_events():
            t = self._txns.get(ev.txn)
            if t is None:
                continue
            if isinstance(ev, Granted):
                env, t.pending = t.pending, None
                t.last_active = io.now
                if env is not None:
                    self._complete(io, env, t)
            elif isinstance(ev, Aborted):
                io.probe("2pc.deadlock_abort")
                self._abort_active(io, ev.txn, ev.reason)

    def _abort_active(self, io: Io, txn: str, reason: str) -> None:
        """Abort a transaction that has not voted YES; nothing of it was durable."""
        t = self._txns.get(txn)
        if t is not None:
            assert t.state == "active", f"{txn}: a prepared transaction aborted unilaterally"
            del self._txns[txn]
            if t.pending is not None:
                io.reply(t.pending, ErrorReply.definite(TxnAborted(f"{txn} aborted: {reason}")))
            io.trace("txn_aborted", txn=txn, reason=reason)
        if self.locks.is_active(txn) or self.locks.was_aborted(txn) is None:
            self.locks.abort(txn, reason)

    def _on_rollback(self, io: Io, env: Envelope, body: TxnRollback) -> None:
        t = self._txns.get(body.txn)
        if t is not None and t.state == "prepared":
            io.reply(env, ErrorReply.definite(Rejected(
                f"{body.txn} is prepared: only its coordinator decides")))
            return
        if self.done.get(body.txn):
            io.reply(env, ErrorReply.definite(Rejected(f"{body.txn} already committed")))
            return
        self._abort_active(io, body.txn, "rolled back by the client")
        io.reply(env, RollbackAck(body.txn))

    # -- the protocol -------------------------------------------------------------------

    def _on_prepare(self, io: Io, env: Envelope, p: Prepare) -> None:
        if self.node_id not in p.participants or not p.coordinators:
            io.trace("refused", what="prepare", txn=p.txn, why="not a participant")
            io.probe("2pc.bad_prepare_refused")
            return
        vote, reason = self._vote(io, p)
        io.send(env.source, Vote(p.txn, self.node_id, vote, reason))

    def _vote(self, io: Io, p: Prepare) -> tuple[str, str]:
        known = self.done.get(p.txn)
        if known is not None:
            io.probe("2pc.late_prepare")
            return (VOTE_YES, "already committed") if known else (VOTE_NO, "already aborted")
        t = self._txns.get(p.txn)
        if t is None:
            self._abort_active(io, p.txn, "prepare for an unknown transaction")
            return VOTE_NO, "unknown transaction (never seen here, or lost in a crash)"
        if t.state == "prepared":
            return VOTE_YES, "duplicate prepare"
        if t.pending is not None or io.buggify("2pc.participant.vote_no"):
            self._abort_active(io, p.txn, "cannot prepare")
            return VOTE_NO, "an operation was still in flight"
        if t.seq != p.ops:
            io.probe("2pc.lost_operations")
            self._abort_active(io, p.txn, "operations lost")
            return VOTE_NO, f"ran {t.seq} of its {p.ops} operations here (lost in a restart)"
        if not t.writes:
            del self._txns[p.txn]
            self.locks.release_all(p.txn)
            io.trace("read_only", txn=p.txn)
            return VOTE_READ_ONLY, "no writes here"
        io.put(PREPARED_NS, p.txn, {
            "ts": t.ts, "writes": [[k, v, d] for k, (v, d) in t.writes.items()],
            "coordinators": list(p.coordinators), "participants": list(p.participants)})
        self.locks.mark_prepared(p.txn)
        t.state = "prepared"
        t.coordinators = list(p.coordinators)
        t.participants = list(p.participants)
        t.prepared_at = io.now
        io.trace("prepared", txn=p.txn)
        return VOTE_YES, "prepared"

    def _on_decision(self, io: Io, env: Envelope, d: Decision) -> None:
        known = self.done.get(d.txn)
        if known is not None:
            if known != d.commit:
                io.trace("refused", what="decision", txn=d.txn, why="contradicts the outcome")
                io.probe("2pc.conflicting_decision_refused")
                return
            io.send(env.source, Ack(d.txn, self.node_id))
            return
        t = self._txns.get(d.txn)
        if t is None or t.state == "active":
            if d.commit:
                io.trace("refused", what="decision", txn=d.txn, why="commit before prepare")
                io.probe("2pc.commit_without_prepare_refused")
                return
            self._abort_active(io, d.txn, "coordinator decided abort")
            io.send(env.source, Ack(d.txn, self.node_id))
            return
        self._finish(io, t, d.commit, "decision")
        io.send(env.source, Ack(d.txn, self.node_id))

    def _finish(self, io: Io, t: _Txn, commit: bool, how: str) -> None:
        """Apply the outcome of a prepared transaction: durable, then unlock."""
        del self._txns[t.txn]
        if commit:
            for key, (value, deleted) in t.writes.items():
                if deleted:
                    self.data.pop(key, None)
                    io.delete(KV_NS, key)
                else:
                    self.data[key] = value
                    io.put(KV_NS, key, value)
        io.delete(PREPARED_NS, t.txn)
        seq = self.done.record(io, t.txn, commit)
        if commit:
            self.locks.release_all(t.txn)
        else:
            self.locks.abort(t.txn, "coordinator decided abort")
        io.trace("committed" if commit else "aborted", txn=t.txn, seq=seq, how=how)
        if t.blocked:
            io.trace("unblocked", txn=t.txn, how=how)
            io.probe("2pc.blocked_resolved")

    def _query(self, io: Io, t: _Txn) -> None:
        t.last_query = io.now
        for c in t.coordinators:
            io.send(c, QueryOutcome(t.txn, self.node_id))

    def _on_peer_query(self, io: Io, env: Envelope, q: PeerQuery) -> None:
        known = self.done.get(q.txn)
        t = self._txns.get(q.txn)
        if known is not None:
            state = "committed" if known else "aborted"
        elif t is not None and t.state == "prepared":
            state = "prepared"
        elif t is not None:
            io.probe("2pc.peer_forced_abort")
            self._abort_active(io, q.txn, "a peer is in doubt and this one never voted")
            state = "aborted"
        else:
            state = "unknown"
        io.send(env.source, PeerState(q.txn, self.node_id, state))

    def _on_peer_state(self, io: Io, s: PeerState) -> None:
        t = self._txns.get(s.txn)
        if t is None or t.state != "prepared" or s.state not in ("committed", "aborted"):
            return
        if s.peer not in t.participants:
            io.probe("2pc.peer_state_from_stranger")
            return
        io.probe("2pc.cooperative_termination_resolved")
        self._finish(io, t, s.state == "committed", f"cooperative termination via {s.peer}")

    # -- observation --------------------------------------------------------------------

    def status(self, now: float) -> StatusReply:
        txns = {t.txn: {"state": t.state, "blocked": t.blocked,
                        "in_doubt_s": round(now - t.prepared_at, 3) if t.state == "prepared"
                        else 0.0}
                for t in self._txns.values()}
        info = {"keys": len(self.data), "deadlock": self.locks.policy.value,
                "remembered_outcomes": len(self.done), **self.locks.counters}
        return StatusReply(self.node_id, "participant", txns, info)

    def blocked(self) -> list[str]:
        """Transactions this participant is blocked on (prepared, no outcome reachable)."""
        return [t.txn for t in self._txns.values() if t.blocked]

    def prepared(self) -> list[str]:
        return [t.txn for t in self._txns.values() if t.state == "prepared"]
