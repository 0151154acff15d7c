"""The replicated coordinator: the 2PC decision log as a state machine on consensus.

Gray & Lamport, "Consensus on Transaction Commit" (TODS 2006) §4 observe that 2PC
blocks because one process (the coordinator) holds the decision, and that running the
coordinator's log through consensus removes the single point: with 2f+1 coordinator
replicas any f may fail. Spanner (OSDI 2012 §4.2.1) does this with a Paxos group as
the coordinator. Here the decision log is a ``DecisionLog`` state machine replicated by
any consensus plugin (``registry.consensus("raft")``, ``"paxos"``; the core's ``solo`` is
a single node and so no better than the plain coordinator).

Rules (beyond ``CoordinatorBase``):

* Only the leader of the consensus group runs rounds; other replicas answer
  ``CommitTxn`` with ``NotLeader(hint)``.
* A decision is **proposed** to the log (``["decide", txn, commit, inform]``) and acted
  on -- sent to participants, answered to the client -- only once **applied**. The log's
  rule is *first decision wins*: a later ``decide`` for a decided transaction changes
  nothing and the applied (first) outcome is the one sent. So a presumed abort (a
  ``decide`` with ABORT proposed when an in-doubt participant asks about a transaction
  this leader has no round for) and a COMMIT proposed by an earlier leader's round can
  never both take effect.
* When all ACKs are in, ``["forget", txn]`` moves the decision to the bounded outcome
  memory. A new leader re-sends every decision not yet forgotten (it tracks ACKs in
  memory, afresh).
* Rounds in progress live in the leader's memory; a leader change loses them, and the
  participants' queries then resolve those transactions by presumed abort through the
  log -- unless the client's retried ``CommitTxn`` reaches the new leader first and all
  participants vote YES again.

Durable state is the consensus core's (its log and snapshots, namespace ``consensus``);
the state machine is rebuilt from them on restart. The log is applied (snapshots, index
order, compaction, leadership edges) by ``giants.core.stacked.LogApplier``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Never

from giants.core.consensus import ConsensusConfig, ConsensusFactory
from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import NotLeader
from giants.core.process import Durable, Io
from giants.core.stacked import LogApplier, pack, unpack
from giants.twopc._coordinator import CoordinatorBase, CoordinatorOptions, _Round
from giants.twopc._messages import Decision
from giants.twopc._outcomes import MAX_REMEMBERED_OUTCOMES

__all__ = ["DecisionLog", "ReplicatedCoordinator", "SNAPSHOT_EVERY"]

# Snapshot the decision log after this many applied entries (bounds replay on restart).
SNAPSHOT_EVERY = 500


class DecisionLog:
    """The replicated state: open decisions (awaiting ACKs) and finished outcomes."""

    def __init__(self, max_done: int = MAX_REMEMBERED_OUTCOMES) -> None:
        self.open: dict[str, tuple[bool, list[str]]] = {}
        self.done: OrderedDict[str, bool] = OrderedDict()
        self.max_done = max_done

    def known(self, txn: str) -> bool | None:
        if txn in self.open:
            return self.open[txn][0]
        return self.done.get(txn)

    def apply(self, command: list[Any]) -> bool | None:
        """Apply one command; returns the transaction's outcome after it."""
        op, txn = command[0], command[1]
        if op == "decide":
            first = self.known(txn)
            if first is not None:
                return first
            commit, inform = bool(command[2]), list(command[3])
            if commit and inform:
                self.open[txn] = (True, inform)
            else:
                self._remember(txn, commit)
            return commit
        assert op == "forget", f"unknown decision-log command {op!r}"
        rec = self.open.pop(txn, None)
        if rec is not None:
            self._remember(txn, rec[0])
        return self.known(txn)

    def _remember(self, txn: str, commit: bool) -> None:
        self.done[txn] = commit
        while len(self.done) > self.max_done:
            self.done.popitem(last=False)

    def snapshot(self) -> Any:
        return {"open": [[t, c, i] for t, (c, i) in self.open.items()],
                "done": [[t, c] for t, c in self.done.items()]}

    def restore(self, snap: Any) -> None:
        self.open = {t: (bool(c), list(i)) for t, c, i in snap["open"]}
        self.done = OrderedDict((t, bool(c)) for t, c in snap["done"])


class ReplicatedCoordinator(CoordinatorBase):
    """A coordinator replica. ``peers`` are the coordinator replicas (ids -> addresses)."""

    role = "replicated-coordinator"

    def __init__(self, node_id: str, durable: Durable, *, peers: dict[str, str],
                 consensus: ConsensusFactory, shards: list[str] | None = None,
                 options: CoordinatorOptions | None = None,
                 consensus_options: dict[str, Any] | None = None,
                 snapshot_every: int = SNAPSHOT_EVERY) -> None:
        super().__init__(node_id, sorted(peers), shards, options)
        self.consensus = consensus(ConsensusConfig(node_id=node_id, peers=dict(peers),
                                                   options=dict(consensus_options or {})),
                                   durable)
        self.log = DecisionLog()
        self.applier: LogApplier[Never] = LogApplier(self.consensus, self,
                                                     snapshot_every=snapshot_every)
        self._clients: dict[str, list[Envelope]] = {}
        self._askers: dict[str, set[str]] = {}
        self._presumed: dict[str, float] = {}
        self._reasons: dict[str, str] = {}

    # -- Process ------------------------------------------------------------------------

    def start(self, io: Io) -> None:
        self.applier.start(io)

    def tick(self, io: Io) -> None:
        self.applier.tick(io)
        if self.applier.leading:
            super().tick(io)

    def receive(self, io: Io, env: Envelope) -> None:
        if not self.applier.receive(io, env):
            super().receive(io, env)
        self.applier.drain(io)

    # -- CoordinatorBase hooks ----------------------------------------------------------

    def _known(self, txn: str) -> bool | None:
        return self.log.known(txn)

    def _on_waits_for(self, io: Io, w: Any) -> None:
        if self.applier.leading:                # one detector: the leader's
            super()._on_waits_for(io, w)

    def _may_coordinate(self, io: Io, env: Envelope) -> bool:
        if self.applier.leading:
            return True
        io.reply(env, ErrorReply.definite(NotLeader(hint=self.consensus.leader())))
        return False

    def _make_durable(self, io: Io, r: _Round, commit: bool, inform: list[str],
                      reason: str) -> None:
        if not self._propose(io, ["decide", r.txn, commit, inform]):
            for env in r.clients:
                io.reply(env, ErrorReply.definite(NotLeader(hint=self.consensus.leader())))
            return
        self._clients.setdefault(r.txn, []).extend(r.clients)
        self._reasons[r.txn] = reason

    def _presume_abort(self, io: Io, txn: str, asker: str) -> None:
        if not self.applier.leading:
            return                               # the leader answers; we may lag behind
        self._askers.setdefault(txn, set()).add(asker)
        last = self._presumed.get(txn)
        if last is None or io.now - last >= 2 * self.options.retry_s:
            self._presumed[txn] = io.now          # re-proposed if the entry got lost
            self._propose(io, ["decide", txn, False, []])

    def _forget(self, io: Io, txn: str) -> None:
        self._propose(io, ["forget", txn])

    def _propose(self, io: Io, command: list[Any]) -> bool:
        try:
            self.consensus.propose(io, pack(command))
        except NotLeader:
            return False
        return True

    # -- applying the log ---------------------------------------------------------------

    def apply_committed(self, io: Io, index: int, command: bytes) -> None:
        self._apply(io, unpack(command))

    def snapshot_state(self) -> bytes:
        return pack(self.log.snapshot())

    def restore_state(self, data: bytes) -> None:
        self.log.restore(unpack(data))

    def _apply(self, io: Io, command: list[Any]) -> None:
        outcome = self.log.apply(command)
        txn = command[1]
        if command[0] != "decide" or not self.applier.leading:
            return
        assert outcome is not None
        clients = self._clients.pop(txn, [])
        askers = self._askers.pop(txn, set())
        self._presumed.pop(txn, None)
        rec = self.log.open.get(txn)
        if outcome:
            inform = rec[1] if rec is not None and txn not in self._sending else []
        else:
            inform = [str(p) for p in command[3]]
        reason = self._reasons.pop(txn, "")
        self._decided(io, txn, outcome, inform, clients,
                      reason if command[2] == outcome else "an earlier decision stands")
        for p in sorted(askers - set(inform)):
            io.send(p, Decision(txn, outcome))

    def leadership_changed(self, io: Io, leading: bool) -> None:
        if leading:
            io.trace("coordinator_leader", open=len(self.log.open))
            for txn, (commit, inform) in self.log.open.items():
                if txn not in self._sending:
                    self._decided(io, txn, commit, inform, [])
        else:
            io.trace("coordinator_deposed")
            hint = self.consensus.leader()
            for r in self._rounds.values():       # nothing proposed for these: redirect
                for env in r.clients:
                    io.reply(env, ErrorReply.definite(NotLeader(hint=hint)))
            # decisions proposed but not applied may still be chosen: their clients get no
            # answer here, time out, and retry CommitTxn (answered from the log)
            self._rounds.clear()
            self._sending.clear()
            self._clients.clear()
            self._askers.clear()
            self._presumed.clear()
            self._reasons.clear()

    def _info(self) -> dict[str, Any]:
        return {"leader": self.consensus.leader(), "open_decisions": len(self.log.open),
                "remembered_outcomes": len(self.log.done),
                "applied_index": self.applier.applied_index}
