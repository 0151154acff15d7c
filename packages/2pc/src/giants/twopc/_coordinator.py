"""The 2PC coordinator (transaction manager): vote collection, decision, dissemination.

Gray 1978 §5.8.3.3; Mohan, Lindsay, Obermarck (R*, TODS 1986) §2 "presumed abort".

``CoordinatorBase`` is the protocol both coordinators share; how a decision becomes
durable is the one thing that differs:

* ``Coordinator`` (plain, one process) **force-writes** a COMMIT record to its own log
  (``io.put`` -- the host makes it durable before any message of the same call leaves)
  and then sends COMMIT. It is the textbook 2PC: if it crashes after participants voted
  YES and before they learn the outcome, they block until it returns.
* ``ReplicatedCoordinator`` (``_replicated``) appends the decision to a replicated
  log on a consensus plugin (Raft, Paxos) and sends it once the log has chosen it, so
  any surviving majority of coordinator replicas can answer.

Rules:

* Phase 1: ``CommitTxn`` starts a round: PREPARE to every participant, re-sent every
  ``retry_s`` to those that have not voted. Votes are collected in memory only.
* Decision: any NO vote, or no unanimous answer within ``vote_timeout_s``, decides
  ABORT; all YES / READ-ONLY decides COMMIT. **Presumed abort**: an ABORT is not
  logged before it is sent and needs no acknowledgements; a COMMIT is durable before it
  leaves and is re-sent every ``retry_s`` to participants that voted YES until each ACKs;
  then the coordinator forgets it (END) and keeps only the bounded outcome cache.
* ``QueryOutcome`` from an in-doubt participant is answered with the decision; with no
  record and no round in progress the answer is ABORT (the presumption), recorded so
  that a later retry of ``CommitTxn`` for that transaction gets ABORT too.
* The client's ``CommitTxn`` is answered once the decision is durable; a retry of a
  decided transaction is answered from the log or the outcome cache.
* Bad input: an empty or duplicated participant list, unknown shards, a vote from a
  stranger, a duplicate vote or ACK: refused or ignored, nothing changes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import DefiniteError, Rejected, Unavailable
from giants.core.process import Durable, Io
from giants.twopc._messages import (
    VOTE_NO,
    VOTE_READ_ONLY,
    VOTE_YES,
    AbortVictim,
    Ack,
    CommitTxn,
    Decision,
    Prepare,
    QueryOutcome,
    StatusQuery,
    StatusReply,
    TxnOutcome,
    Vote,
    WaitsFor,
)
from giants.twopc._outcomes import OutcomeCache
from giants.twopl import find_cycle

__all__ = ["Coordinator", "CoordinatorBase", "CoordinatorOptions", "LOG_NS", "COORD_DONE_NS"]

LOG_NS = "2pc.log"
COORD_DONE_NS = "2pc.coord_done"
# More rounds than this in flight and new commits are refused (Unavailable).
MAX_ROUNDS = 10_000
# A transaction spans at most this many shards.
MAX_PARTICIPANTS = 64


@dataclass
class CoordinatorOptions:
    vote_timeout_s: float = 2.0
    retry_s: float = 0.2

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoordinatorOptions:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class _Round:
    txn: str
    participants: list[str]
    ops: dict[str, int]
    started: float
    last_sent: float
    votes: dict[str, str] = field(default_factory=dict)
    clients: list[Envelope] = field(default_factory=list)


@dataclass
class _Disseminating:
    txn: str
    commit: bool
    pending: set[str]
    last_sent: float


class CoordinatorBase(abc.ABC):
    """The shared protocol; subclasses make decisions durable (see the module docs)."""

    role = "coordinator"

    def __init__(self, node_id: str, coordinators: list[str], shards: list[str] | None,
                 options: CoordinatorOptions | None) -> None:
        self.node_id = node_id
        self.coordinators = list(coordinators)
        self.shards = set(shards) if shards else None
        self.options = options or CoordinatorOptions()
        self._rounds: dict[str, _Round] = {}
        self._sending: dict[str, _Disseminating] = {}
        self._waits: dict[str, dict[str, list[str]]] = {}   # shard -> its waits-for graph
        self._ts: dict[str, float] = {}
        self.global_deadlocks = 0

    # -- hooks ------------------------------------------------------------------------------

    @abc.abstractmethod
    def _known(self, txn: str) -> bool | None:
        """The outcome if decided (logged or remembered), else None."""
        ...

    @abc.abstractmethod
    def _make_durable(self, io: Io, r: _Round, commit: bool, inform: list[str],
                      reason: str) -> None:
        """Make the decision durable; call ``_decided`` once it is."""
        ...

    @abc.abstractmethod
    def _presume_abort(self, io: Io, txn: str, asker: str) -> None:
        """No record, no round: record ABORT and tell ``asker``."""
        ...

    @abc.abstractmethod
    def _forget(self, io: Io, txn: str) -> None:
        """Every participant ACKed the COMMIT: end the transaction."""
        ...

    def _may_coordinate(self, io: Io, env: Envelope) -> bool:
        """False (after answering ``env``) when this node cannot start rounds now."""
        return True

    # -- Process ------------------------------------------------------------------------

    def receive(self, io: Io, env: Envelope) -> None:
        body = env.body
        if isinstance(body, CommitTxn):
            self._on_commit(io, env, body)
        elif isinstance(body, Vote):
            self._on_vote(io, body)
        elif isinstance(body, Ack):
            self._on_ack(io, body)
        elif isinstance(body, QueryOutcome):
            self._on_query(io, env, body)
        elif isinstance(body, WaitsFor):
            self._on_waits_for(io, body)
        elif isinstance(body, StatusQuery):
            io.reply(env, self.status(io.now))
        elif env.in_reply_to is None:
            io.reply(env, ErrorReply.protocol(f"a coordinator does not take {type(body).__name__}"))

    def tick(self, io: Io) -> None:
        now, opts = io.now, self.options
        for r in list(self._rounds.values()):
            if now - r.started >= opts.vote_timeout_s:
                io.probe("2pc.vote_timeout_abort")
                self._decide(io, r, False, "no unanimous vote within the timeout")
            elif now - r.last_sent >= opts.retry_s:
                r.last_sent = now
                for p in r.participants:
                    if p not in r.votes:
                        io.send(p, Prepare(r.txn, self.coordinators, r.participants, r.ops[p]))
        for d in self._sending.values():
            if now - d.last_sent >= opts.retry_s:
                d.last_sent = now
                io.probe("2pc.decision_resent")
                for p in sorted(d.pending):
                    io.send(p, Decision(d.txn, d.commit))

    # -- phase 1 ------------------------------------------------------------------------

    def _on_commit(self, io: Io, env: Envelope, c: CommitTxn) -> None:
        try:
            self._check_participants(c.participants, c.ops)
        except DefiniteError as exc:
            io.reply(env, ErrorReply.definite(exc))
            return
        known = self._known(c.txn)
        if known is not None:
            io.probe("2pc.commit_retry_answered")
            io.reply(env, TxnOutcome(c.txn, known, "already decided"))
            return
        r = self._rounds.get(c.txn)
        if r is not None:
            if r.ops != dict(zip(c.participants, c.ops, strict=True)):
                io.reply(env, ErrorReply.definite(Rejected(
                    f"{c.txn} is being committed with a different participant list")))
                return
            r.clients.append(env)
            return
        if not self._may_coordinate(io, env):
            return
        if len(self._rounds) >= MAX_ROUNDS:
            io.reply(env, ErrorReply.definite(Unavailable("too many commits in flight")))
            return
        r = _Round(c.txn, list(c.participants), dict(zip(c.participants, c.ops, strict=True)),
                   io.now, io.now, clients=[env])
        self._rounds[c.txn] = r
        io.trace("prepare_sent", txn=c.txn, participants=r.participants)
        for p in r.participants:
            io.send(p, Prepare(c.txn, self.coordinators, r.participants, r.ops[p]))

    def _check_participants(self, participants: list[str], ops: list[int]) -> None:
        if not participants or len(participants) > MAX_PARTICIPANTS:
            raise Rejected(f"a transaction has 1..{MAX_PARTICIPANTS} participants")
        if len(ops) != len(participants) or any(n < 1 for n in ops):
            raise Rejected("ops must give each participant's operation count (>= 1)")
        if len(set(participants)) != len(participants):
            raise Rejected("duplicate participants")
        if self.shards is not None:
            unknown = sorted(set(participants) - self.shards)
            if unknown:
                raise Rejected(f"unknown shards {unknown}; known: {sorted(self.shards)}")

    def _on_vote(self, io: Io, v: Vote) -> None:
        r = self._rounds.get(v.txn)
        if r is None:
            known = self._known(v.txn)
            if known is not None and v.vote == VOTE_YES:
                io.send(v.participant, Decision(v.txn, known))     # a late or repeated vote
            return
        if v.participant not in r.participants or v.participant in r.votes:
            io.probe("2pc.stray_vote_ignored")
            return
        if v.vote not in (VOTE_YES, VOTE_NO, VOTE_READ_ONLY):
            io.probe("2pc.malformed_vote_ignored")
            return
        r.votes[v.participant] = v.vote
        io.trace("vote", txn=v.txn, participant=v.participant, vote=v.vote)
        if v.vote == VOTE_NO:
            self._decide(io, r, False, f"{v.participant} voted no: {v.reason}")
        elif len(r.votes) == len(r.participants):
            self._decide(io, r, True, "all voted yes")

    # -- phase 2 ------------------------------------------------------------------------

    def _decide(self, io: Io, r: _Round, commit: bool, reason: str) -> None:
        del self._rounds[r.txn]
        if commit:
            inform = [p for p in r.participants if r.votes.get(p) == VOTE_YES]
        else:
            inform = [p for p in r.participants
                      if r.votes.get(p) not in (VOTE_NO, VOTE_READ_ONLY)]
        io.trace("deciding", txn=r.txn, commit=commit, reason=reason)
        self._make_durable(io, r, commit, inform, reason)

    def _decided(self, io: Io, txn: str, commit: bool, inform: list[str],
                 clients: list[Envelope], reason: str = "") -> None:
        """The decision is durable: send it, answer the clients."""
        io.trace("decided", txn=txn, commit=commit)
        for p in inform:
            io.send(p, Decision(txn, commit))
        if commit and inform:
            self._sending[txn] = _Disseminating(txn, True, set(inform), io.now)
        for env in clients:
            io.reply(env, TxnOutcome(txn, commit, reason))

    def _on_ack(self, io: Io, a: Ack) -> None:
        d = self._sending.get(a.txn)
        if d is None or a.participant not in d.pending:
            return
        d.pending.discard(a.participant)
        if not d.pending:
            del self._sending[a.txn]
            io.trace("forgotten", txn=a.txn)
            self._forget(io, a.txn)

    def _on_query(self, io: Io, env: Envelope, q: QueryOutcome) -> None:
        known = self._known(q.txn)
        if known is not None:
            io.send(env.source, Decision(q.txn, known))
        elif q.txn in self._rounds:
            io.probe("2pc.query_during_round")
        else:
            io.probe("2pc.presumed_abort")
            self._presume_abort(io, q.txn, env.source)

    # -- global deadlock detection ---------------------------------------------------

    def _on_waits_for(self, io: Io, w: WaitsFor) -> None:
        """Merge a shard's waits-for graph into the global one and break every cycle:
        the youngest transaction of each is aborted at every shard (a centralized
        detector, Bernstein et al. 1987 §3.11; stale reports can only cause an
        unnecessary abort, never a missed one once the graph settles)."""
        if self.shards is not None and w.shard not in self.shards:
            io.probe("2pc.waits_for_from_stranger")
            return
        self._waits[w.shard] = {t: list(ws) for t, ws in w.edges.items()}
        self._ts.update(w.ts)
        while True:
            merged: dict[str, set[str]] = {}
            for graph in self._waits.values():
                for t, ws in graph.items():
                    merged.setdefault(t, set()).update(ws)
            cycle = find_cycle(merged)
            if cycle is None:
                break
            victim = max(cycle, key=lambda t: (self._ts.get(t, 0.0), t))
            io.probe("2pc.global_deadlock")
            self.global_deadlocks += 1
            io.trace("global_deadlock", cycle=cycle, victim=victim)
            reason = f"global deadlock victim (cycle {' -> '.join(cycle)})"
            for shard in sorted(self.shards or self._waits):
                io.send(shard, AbortVictim(victim, reason))
            for graph in self._waits.values():
                graph.pop(victim, None)
        live = {t for g in self._waits.values() for e in g.items() for t in (e[0], *e[1])}
        self._ts = {t: v for t, v in self._ts.items() if t in live}

    # -- observation --------------------------------------------------------------------

    def status(self, now: float) -> StatusReply:
        txns: dict[str, dict[str, Any]] = {
            r.txn: {"state": "collecting", "votes": dict(r.votes),
                    "age_s": round(now - r.started, 3)} for r in self._rounds.values()}
        for d in self._sending.values():
            txns[d.txn] = {"state": "committed", "awaiting_ack": sorted(d.pending)}
        return StatusReply(self.node_id, self.role, txns, self._info())

    def _info(self) -> dict[str, Any]:
        return {}


class Coordinator(CoordinatorBase):
    """The plain coordinator: one process, its own durable log. See the module docs.

    Durable layout: ``2pc.log`` txn -> ``{"participants": [...]}`` for COMMITs awaiting
    ACKs; the outcome cache ``2pc.coord_done``.
    """

    def __init__(self, node_id: str, durable: Durable, *, shards: list[str] | None = None,
                 options: CoordinatorOptions | None = None) -> None:
        super().__init__(node_id, [node_id], shards, options)
        self.done = OutcomeCache(durable, COORD_DONE_NS)
        self._log: dict[str, list[str]] = {
            str(txn): list(rec["participants"]) for txn, rec in durable.items(LOG_NS)}

    def start(self, io: Io) -> None:
        for txn, participants in self._log.items():
            io.trace("recovered_commit", txn=txn)
            self._decided(io, txn, True, participants, [])

    def _known(self, txn: str) -> bool | None:
        if txn in self._log:
            return True
        return self.done.get(txn)

    def _make_durable(self, io: Io, r: _Round, commit: bool, inform: list[str],
                      reason: str) -> None:
        if commit and inform:
            io.put(LOG_NS, r.txn, {"participants": inform})   # the commit point
            self._log[r.txn] = inform
        else:
            self.done.record(io, r.txn, commit)
        self._decided(io, r.txn, commit, inform, r.clients, reason)

    def _presume_abort(self, io: Io, txn: str, asker: str) -> None:
        self.done.record(io, txn, False)
        io.send(asker, Decision(txn, False))

    def _forget(self, io: Io, txn: str) -> None:
        del self._log[txn]
        io.delete(LOG_NS, txn)
        self.done.record(io, txn, True)

    def _info(self) -> dict[str, Any]:
        return {"logged_commits": len(self._log), "remembered_outcomes": len(self.done),
                "global_deadlocks": self.global_deadlocks}
