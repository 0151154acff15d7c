"""Multi-Paxos as a ``ConsensusCore`` ("Paxos Made Simple" §3; "Paxos Made Live" §4-5).

Every node is an acceptor and a learner; a voter whose failure detector fires (no word
from a leader for a randomized ``election_ticks..2*election_ticks`` ticks) becomes a
proposer candidate. Roles and their transitions (``_become_*`` assert the prior role):

``follower``  -> ``candidate`` on election timeout (voters only);
``candidate`` -> ``leader`` when a majority of every configuration of the next alpha
              slots promised its ballot (phase 1 once, for all slots after its chosen
              prefix), and it holds every value a promiser had compacted;
``candidate``/``leader`` -> ``follower`` on a higher ballot (Nack, Prepare, Accept) or,
              for a leader, when a majority stopped answering (check quorum).

A new leader re-proposes, in its own ballot, the highest-ballot value any promiser
accepted at each slot after its prefix, and a **no-op for every gap** up to the highest
such slot. Then the steady state is phase 2 only: each command gets the next slot and
one Accept round to a majority; up to ``alpha`` slots are in flight at once (pipelining).
The chosen prefix travels on every Accept (``commit``) and heartbeat; a follower marks a
slot chosen when it accepted that slot in the announcing leader's ballot, and is sent
the values it lacks (``Learn``; a snapshot if the leader compacted them) otherwise.
Learners hand entries to the service strictly in slot order.

Reads (``read_barrier``) are linearizable without clocks: the read index is the last
slot the leader proposed (at least the end of what it recovered), released once a
majority acknowledged a heartbeat sent after the read arrived (no higher ballot exists).
With ``lease_s > 0`` a leader also holds a **lease** -- acceptors refuse other
proposers' Prepares for ``lease_s * (1 + max_clock_drift)`` after hearing the leader --
and serves reads at once while it lasts. Leases rely on bounded clock drift; they are
off by default.

Membership changes go through the log (``_config``: alpha window). One change at a time;
the leader pads no-ops so a change takes effect promptly. A leader cannot remove itself.

Options (``ConsensusConfig.options``): ``alpha`` (window, 64), ``heartbeat_ticks`` (3),
``election_ticks`` (15), ``lease_s`` (0.0: off), ``max_clock_drift`` (0.1), ``audit``
(record events for the simulation's invariant checker).

Ordering contract: every promise and accept is ``io.put`` in the same call, before the
reply is recorded, so it is durable before the reply leaves.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from giants.core.consensus import ConsensusConfig, Entry, Membership, Ready
from giants.core.envelope import Envelope
from giants.core.errors import NotLeader, Rejected
from giants.core.process import Durable, Io
from giants.paxos._config import Config, pack_config
from giants.paxos._leader import LeaderRole, Value
from giants.paxos._log import CHOSEN, ZERO, PaxosLog
from giants.paxos._messages import (
    MULTI_MESSAGES,
    Accept,
    Accepted,
    Ballot,
    CatchUpRequest,
    Learn,
    Nack,
    Prepare,
    Promise,
)
from giants.paxos._validate import malformed

__all__ = ["MultiPaxos", "paxos_factory", "DEFAULT_OPTIONS"]

log = logging.getLogger("giants.paxos")

DEFAULT_OPTIONS: dict[str, Any] = {
    "alpha": 64,
    "heartbeat_ticks": 3,
    "election_ticks": 15,
    "lease_s": 0.0,
    "max_clock_drift": 0.1,
    "audit": False,
}
# Read barriers waiting for a heartbeat quorum; ReplicatedService bounds them too.
MAX_PENDING_READS = 10_000
MEMBERSHIP_OPS = ("add_learner", "promote", "remove")



class MultiPaxos(LeaderRole):
    """One node's Multi-Paxos core. See the module docstring."""

    def __init__(self, config: ConsensusConfig, durable: Durable) -> None:
        self.node_id = config.node_id
        opts = {**DEFAULT_OPTIONS, **config.options}
        self.alpha = int(opts["alpha"])
        self.heartbeat_ticks = int(opts["heartbeat_ticks"])
        self.election_ticks = int(opts["election_ticks"])
        self.lease_s = float(opts["lease_s"])
        self.max_drift = float(opts["max_clock_drift"])
        assert self.alpha >= 1 and self.heartbeat_ticks >= 1
        assert self.election_ticks > self.heartbeat_ticks
        self.audit: list[tuple[Any, ...]] | None = [] if opts["audit"] else None
        initial = None if config.join else Config(dict(config.peers), {})
        self.log = PaxosLog(config.ns, durable, initial, self.audit, self.alpha)
        self.initial_peers = set(config.peers)
        self.role = "follower"
        self.ballot: Ballot = ZERO          # my ballot as candidate or leader
        self.max_round = self.log.promised[0]
        self.leader_id: str | None = None
        self.leader_ballot: Ballot | None = None
        self.leader_commit = 0
        self.ticks = 0
        self.deadline = 0
        self.lease_guard_until = 0.0        # acceptor: refuse other proposers until then
        # candidate and leader
        self.promises: dict[str, Promise] = {}
        self.last_send_tick = 0
        self.catch_up_asked_tick: int | None = None
        # leader
        self.next_slot = 0
        self.recovery: dict[int, tuple[Ballot, Value]] = {}
        self.recovery_end = 0
        self.proposals: dict[int, Value] = {}
        self.proposed_at: dict[int, int] = {}
        self.votes: dict[int, set[str]] = {}
        self.queue: deque[Value] = deque()
        self.peer_prefix: dict[str, int] = {}
        self.peer_ack_tick: dict[str, int] = {}
        self.peer_seq: dict[str, int] = {}
        self.hb_seq = 0
        self.hb_sent_at: dict[int, float] = {}
        self.last_hb_tick = 0
        self.prev_hb_commit = 0
        self.reads: deque[tuple[int, int, int]] = deque()
        self.lease_until = 0.0
        self.confirmed_seq = 0
        self._accept_io: Io | None = None
        self._accept_pos: dict[str, int] = {}
        self._ready = Ready(snapshot=self.log.snapshot)
        self.emitted = self.log.snap_index
        self._emit()

    # -- the ConsensusCore contract ------------------------------------------------------

    def start(self, io: Io) -> None:
        self._reset_deadline(io)
        io.trace("paxos.start", role=self.role, promised=list(self.log.promised),
                 prefix=self.log.prefix)
        if self._solo_voter():
            self._campaign(io)

    def tick(self, io: Io) -> None:
        self.ticks += 1
        if self.role == "leader":
            self._leader_tick(io)
        elif self.role == "candidate":
            if self.ticks >= self.deadline:
                self._campaign(io)
            elif self.ticks - self.last_send_tick >= self.heartbeat_ticks:
                self._send_prepares(io, resend=True)
                self._maybe_lead(io)
        elif self.ticks >= self.deadline and self._is_voter():
            self._campaign(io)
        self._piggyback_prefix(io)

    def handles(self, body: Any) -> bool:
        return isinstance(body, MULTI_MESSAGES)

    def receive(self, io: Io, env: Envelope) -> None:
        body, src = env.body, env.source
        if src not in self._known() or src == self.node_id:
            self._reject(io, env, "unknown sender")
            return
        why = malformed(body, src)
        if why is not None:
            self._reject(io, env, why)
            return
        if isinstance(body, Prepare):
            self._on_prepare(io, src, body)
        elif isinstance(body, Promise):
            self._on_promise(io, src, body)
        elif isinstance(body, Accept):
            self._on_accept(io, src, body)
        elif isinstance(body, Accepted):
            self._on_accepted(io, src, body)
        elif isinstance(body, Nack):
            self._on_nack(io, body)
        elif isinstance(body, CatchUpRequest):
            self._send_learn(io, src, body.from_slot)
        else:
            assert isinstance(body, Learn)
            self._on_learn(io, body)
        self._piggyback_prefix(io)

    def _piggyback_prefix(self, io: Io) -> None:
        """Persist the chosen prefix only along with a write the call makes anyway
        (no disk write of its own; see ``PaxosLog.persist_prefix``)."""
        if io.persists:
            self.log.persist_prefix(io)

    def propose(self, io: Io, command: bytes) -> None:
        if self.role != "leader":
            raise NotLeader(hint=self._hint())
        self.queue.append(("cmd", command))
        self._pump(io)

    def read_barrier(self, io: Io, token: int) -> None:
        if self.role != "leader":
            raise NotLeader(hint=self._hint())
        read_index = max(self.recovery_end, self.next_slot - 1)
        if self.lease_s > 0 and io.now < self.lease_until:
            io.probe("paxos.lease_read")
            self._ready.reads.append((token, read_index))
            return
        if len(self.reads) >= MAX_PENDING_READS:
            raise NotLeader("too many pending reads", hint=self.node_id)
        self.reads.append((token, read_index, self.hb_seq + 1))
        if self.confirmed_seq >= self.hb_seq:
            self._heartbeat(io)
        # else: reads arriving while a round is in flight share the next round, started
        # as soon as this one is confirmed (one read round in flight at a time)

    def compact(self, io: Io, index: int, snapshot: bytes) -> None:
        self.log.compact(io, index, snapshot)

    def change_membership(self, io: Io, op: str, node: str, address: str | None = None) -> None:
        if self.role != "leader":
            raise NotLeader(hint=self._hint())
        if op not in MEMBERSHIP_OPS:
            raise Rejected(f"unknown membership op {op!r}; one of {MEMBERSHIP_OPS}")
        if self._change_pending():
            raise Rejected("a membership change is in progress; retry when it took effect")
        latest = self.log.configs.latest()
        voters, learners = dict(latest.voters), dict(latest.learners)
        if op == "add_learner":
            if node in voters or node in learners or not address:
                raise Rejected(f"add_learner needs a new node and its address ({node!r})")
            learners[node] = address
        elif op == "promote":
            if node not in learners:
                raise Rejected(f"{node!r} is not a learner")
            voters[node] = learners.pop(node)
        else:
            if node == self.node_id:
                raise Rejected("the leader cannot remove itself")
            if node not in voters and node not in learners:
                raise Rejected(f"{node!r} is not a member")
            voters.pop(node, None)
            learners.pop(node, None)
            if not voters:
                raise Rejected("cannot remove the last voter")
        io.trace("paxos.membership", op=op, node=node)
        self.queue.append(("conf", pack_config(voters, learners)))
        self._pump(io)

    def take_ready(self) -> Ready:
        ready, self._ready = self._ready, Ready()
        return ready

    def leader(self) -> str | None:
        return self.node_id if self.role == "leader" else self.leader_id

    def members(self) -> Membership:
        latest = self.log.configs.latest()
        return Membership(dict(latest.voters), dict(latest.learners))

    @property
    def promised(self) -> Ballot:
        return self.log.promised

    # -- role changes ------------------------------------------------------------------

    def _campaign(self, io: Io) -> None:
        assert self.role in ("follower", "candidate"), self.role
        self.max_round = max(self.max_round, self.log.promised[0], self.ballot[0])
        ballot = (self.max_round + 1, self.node_id)
        self.max_round = ballot[0]
        self.log.promise(io, ballot)
        self.role, self.ballot, self.leader_id = "candidate", ballot, None
        self.promises = {self.node_id: self._own_promise()}
        self.catch_up_asked_tick = None
        self._reset_deadline(io)
        io.trace("paxos.candidate", ballot=list(ballot), from_slot=self.log.prefix + 1)
        self._send_prepares(io, resend=False)
        self._maybe_lead(io)

    def _become_leader(self, io: Io) -> None:
        assert self.role == "candidate", self.role
        prefix = self.log.prefix
        merged: dict[int, tuple[Ballot, Value]] = {}
        for promise in self.promises.values():
            _merge(merged, promise.accepted, prefix + 1)
        self.role, self.leader_id = "leader", self.node_id
        self.recovery = merged
        self.recovery_end = max(merged, default=prefix)
        self.next_slot = prefix + 1
        self.proposals, self.proposed_at, self.votes = {}, {}, {}
        self.queue.clear()
        self.peer_prefix, self.peer_seq = {}, {}
        self.peer_ack_tick = {p: self.ticks for p in self._peers()}
        self.reads.clear()
        self.lease_until = 0.0
        self.prev_hb_commit = 0
        self.confirmed_seq = 0
        self.hb_sent_at = {}
        io.trace("paxos.leader", ballot=list(self.ballot), recover_from=prefix + 1,
                 recover_to=self.recovery_end, gaps=self.recovery_end - prefix - len(merged))
        self._pump(io)
        self._heartbeat(io)

    def _become_follower(self, io: Io, why: str, leader: str | None = None) -> None:
        assert self.role in ("candidate", "leader", "follower"), self.role
        if self.role != "follower":
            io.trace("paxos.follower", was=self.role, why=why, ballot=list(self.ballot))
        if self.role == "leader":
            self._ready.failed_reads.extend(token for token, _, _ in self.reads)
            self.reads.clear()
            self.queue.clear()
            self.proposals, self.proposed_at, self.votes, self.recovery = {}, {}, {}, {}
            self.lease_until = 0.0
        self.role, self.leader_id = "follower", leader
        self.promises = {}
        self._reset_deadline(io)

    # -- acceptor ----------------------------------------------------------------------

    def _on_prepare(self, io: Io, src: str, m: Prepare) -> None:
        promised = self.log.promised
        if m.ballot < promised:
            io.send(src, Nack(m.ballot, promised))
            return
        if m.ballot > promised:
            if src not in self._voters():
                self._reject_quietly(io, src, "prepare from a non-voter")
                return
            if (self.lease_s > 0 and self.leader_id not in (None, src)
                    and io.now < self.lease_guard_until):
                io.probe("paxos.prepare_refused_during_lease")
                return
            self.log.promise(io, m.ballot)
            self.max_round = max(self.max_round, m.ballot[0])
            if self.role != "follower":
                self._become_follower(io, f"promised higher ballot {m.ballot}")
            else:
                self.leader_id = None
                self._reset_deadline(io)
        io.send(src, Promise(m.ballot, self.log.accepted_from(m.from_slot),
                             self.log.snap_index, self.log.prefix))

    def _on_accept(self, io: Io, src: str, m: Accept) -> None:
        promised = self.log.promised
        if m.ballot < promised:
            io.send(src, Nack(m.ballot, promised))
            return
        if m.ballot > promised:
            self.log.promise(io, m.ballot)
            self.max_round = max(self.max_round, m.ballot[0])
        if self.role != "follower":
            self._become_follower(io, f"accept in higher ballot {m.ballot}", leader=src)
        if self.leader_ballot != m.ballot:
            self.leader_ballot, self.leader_commit = m.ballot, 0
        self.leader_id = src
        self.leader_commit = max(self.leader_commit, m.commit)
        self._reset_deadline(io)
        if self.lease_s > 0:
            self.lease_guard_until = io.now + self.lease_s * (1 + self.max_drift)
        acked = [slot for slot, kind, data in m.entries
                 if self.log.accept(io, slot, m.ballot, kind, data)]
        self._advance(io, m.ballot, self.leader_commit)
        io.send(src, Accepted(m.ballot, acked, self.log.prefix, m.seq))

    def _on_learn(self, io: Io, m: Learn) -> None:
        if self.role == "leader":
            io.probe("paxos.leader_ignores_learn")
            return
        for slot, voters, learners in m.configs:
            self.log.add_config(io, slot, Config(dict(voters), dict(learners)))
        if m.snapshot is not None and self.log.install(io, m.snap_index, m.snapshot):
            io.probe("paxos.snapshot_installed")
            io.trace("paxos.snapshot_installed", index=m.snap_index)
            self._ready.snapshot = (m.snap_index, m.snapshot)
            self._ready.entries = [e for e in self._ready.entries if e.index > m.snap_index]
            self.emitted = max(self.emitted, m.snap_index)
        for slot, kind, data in m.entries:
            self.log.learn(io, slot, kind, data)
        self._advance(io, None, 0)
        if self.role == "candidate":
            self._maybe_lead(io)

    def _advance(self, io: Io, ballot: Ballot | None, commit: int) -> None:
        if self.log.advance(io, ballot, commit):
            self._emit()

    def _emit(self) -> None:
        for slot in range(self.emitted + 1, self.log.prefix + 1):
            ballot, kind, data = self.log.entries[slot]
            term = 0 if ballot == CHOSEN else ballot[0]
            self._ready.entries.append(Entry(slot, term, data if kind == "cmd" else None))
        self.emitted = max(self.emitted, self.log.prefix)

    # -- candidate ---------------------------------------------------------------------

    def _own_promise(self) -> Promise:
        return Promise(self.ballot, self.log.accepted_from(self.log.prefix + 1),
                       self.log.snap_index, self.log.prefix)

    def _send_prepares(self, io: Io, *, resend: bool) -> None:
        self.last_send_tick = self.ticks
        targets = {v for c in self._window_configs() for v in c.voters}
        for node in sorted(targets - set(self.promises) - {self.node_id}):
            io.send(node, Prepare(self.ballot, self.log.prefix + 1))
        if resend:
            io.probe("paxos.prepare_resent")

    def _on_promise(self, io: Io, src: str, m: Promise) -> None:
        if m.ballot != self.ballot or self.role == "follower":
            return
        self.promises[src] = m
        if self.role == "candidate":
            self._maybe_lead(io)
            return
        # a late promise (a new voter, or a straggler): merge it for unproposed slots
        _merge(self.recovery, m.accepted, self.next_slot)
        self.recovery_end = max(self.recovery_end, max(self.recovery, default=0))
        self._pump(io)

    def _maybe_lead(self, io: Io) -> None:
        ahead = max(((p.snap_index, n) for n, p in self.promises.items()), default=(0, ""))
        if ahead[0] > self.log.prefix:
            # a promiser compacted slots we do not know: fetch them before leading
            if (self.catch_up_asked_tick is None
                    or self.ticks - self.catch_up_asked_tick >= self.heartbeat_ticks):
                self.catch_up_asked_tick = self.ticks
                io.probe("paxos.candidate_catch_up")
                io.send(ahead[1], CatchUpRequest(self.log.prefix + 1))
            return
        if all(c.is_quorum(self.promises) for c in self._window_configs()):
            self.promises[self.node_id] = self._own_promise()
            self._become_leader(io)

    def _on_nack(self, io: Io, m: Nack) -> None:
        self.max_round = max(self.max_round, m.promised[0])
        if self.role != "follower" and m.ballot == self.ballot and m.promised > self.ballot:
            io.probe("paxos.nacked")
            self._become_follower(io, f"nacked by a promise of {m.promised}")

    # -- helpers -----------------------------------------------------------------------

    def _window_configs(self) -> list[Config]:
        lo = self.log.prefix + 1
        return [c for c in self.log.configs.between(lo, lo + self.alpha - 1) if c.voters]

    def _peers(self) -> set[str]:
        nodes: set[str] = set()
        for c in [*self._window_configs(), self.log.configs.latest()]:
            nodes |= set(c.members())
        nodes.discard(self.node_id)
        return nodes

    def _voters(self) -> set[str]:
        return {v for c in [*self._window_configs(), self.log.configs.latest()] for v in c.voters}

    def _is_voter(self) -> bool:
        return self.node_id in self._voters()

    def _solo_voter(self) -> bool:
        return self._voters() == {self.node_id}

    def _known(self) -> set[str]:
        return self.log.configs.known_nodes() | self.initial_peers

    def _hint(self) -> str | None:
        return self.leader_id if self.role == "follower" else None

    def _reset_deadline(self, io: Io) -> None:
        self.deadline = self.ticks + io.rng.randint(self.election_ticks, 2 * self.election_ticks)

    def _reject(self, io: Io, env: Envelope, why: str) -> None:
        log.warning("%s: rejected %s from %s: %s", self.node_id, type(env.body).__name__,
                    env.source, why)
        io.trace("paxos.reject", src=env.source, msg=type(env.body).__name__, why=why)
        io.probe("paxos.rejected")

    def _reject_quietly(self, io: Io, src: str, why: str) -> None:
        log.info("%s: ignored a message from %s: %s", self.node_id, src, why)
        io.probe("paxos.ignored")


def _merge(into: dict[int, tuple[Ballot, Value]], accepted: list[Any], from_slot: int) -> None:
    """Keep, per slot >= ``from_slot``, the value accepted in the highest ballot."""
    for slot, rnd, node, kind, data in accepted:
        if slot < from_slot:
            continue
        ballot = (rnd, node)
        old = into.get(slot)
        if old is None or ballot > old[0]:
            into[slot] = (ballot, (kind, data))


def paxos_factory(config: ConsensusConfig, durable: Durable) -> MultiPaxos:
    """The ``ConsensusFactory`` registered as consensus plugin ``paxos``."""
    return MultiPaxos(config, durable)
