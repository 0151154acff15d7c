"""Basic (single-decree) Paxos: proposers, acceptors and learners ("Paxos Made Simple" §2).

``BasicPaxosNode`` is a sans-I/O ``Process`` playing any of the three roles:

* **acceptor** (§2.2): promises not to accept ballots below the highest it promised,
  and accepts ``(b, v)`` unless it promised above ``b``. Its promise and its accepted
  proposal are ``io.put`` before the reply is recorded (durable before it leaves). It
  tells the proposer and every learner what it accepted (phase 2b).
* **proposer** (§2.2): phase 1 -- Prepare(b) to the acceptors, wait for a majority of
  Promises; phase 2 -- Accept(b, v) with v the value of the highest-ballot proposal
  among the promises, or its own value if there is none. Ballots are ``(round, id)``;
  the round is persisted before the Prepare leaves, so a restarted proposer never
  reuses a ballot.
* **learner** (§2.3): a value is chosen once a majority of acceptors accepted it in the
  same ballot.

Liveness (§2.4). ``mode="naive"``: a proposer that has not seen its value chosen starts
a new, higher ballot every ``retry_ticks`` -- two such proposers can preempt each other
forever (the duel; ``giants sim paxos --scenario duel``). ``mode="distinguished"``: the
proposers announce themselves (``BasicAlive``) and only the lowest-id live one runs
ballots (the others forward their value to it); a preempted proposer waits a randomized,
exponentially growing back-off before its next ballot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from giants.core.codec import message
from giants.core.envelope import Envelope
from giants.core.process import Durable, Io
from giants.paxos._messages import (
    Ballot,
    BasicAccept,
    BasicAccepted,
    BasicNack,
    BasicPrepare,
    BasicPromise,
    BasicPropose,
)

__all__ = ["BasicPaxosNode", "BasicAlive", "MODES"]

log = logging.getLogger("giants.paxos.basic")

MODES = ("naive", "distinguished")
ZERO: Ballot = (0, "")
# Back-off doubling stops here: retry at most every 2**MAX_BACKOFF_EXP * retry_ticks.
MAX_BACKOFF_EXP = 5


@message("paxos.basic.alive")
@dataclass(frozen=True, slots=True)
class BasicAlive:
    """A proposer's heartbeat to the other proposers (who is distinguished)."""

    proposer: str


class BasicPaxosNode:
    """One node of a single-decree Paxos instance. See the module docstring.

    ``audit`` (a list, or None) receives ``("promise", b)``, ``("accept", b, v)`` and
    ``("learn", v)`` events for the invariant checker.
    """

    def __init__(
        self,
        node_id: str,
        durable: Durable,
        *,
        acceptors: list[str],
        learners: list[str],
        proposers: list[str],
        mode: str = "distinguished",
        value: Any = None,
        retry_ticks: int = 30,
        alive_ticks: int = 10,
        audit: list[tuple[Any, ...]] | None = None,
    ) -> None:
        assert mode in MODES, mode
        self.node_id = node_id
        self.acceptors, self.learners, self.proposers = acceptors, learners, proposers
        self.mode = mode
        self.retry_ticks, self.alive_ticks = retry_ticks, alive_ticks
        self.audit = audit
        self.known = {*acceptors, *learners, *proposers}
        # acceptor state (durable)
        p = durable.get("basic.acc", "promised")
        self.promised: Ballot = (p[0], p[1]) if p else ZERO
        a = durable.get("basic.acc", "accepted")
        self.accepted: tuple[Ballot, Any] | None = ((a[0], a[1]), a[2]) if a else None
        # proposer state
        self.round = int(durable.get("basic.prop", "round", 0))
        self.value = value
        self.ballot: Ballot | None = None
        self.phase = 0                                 # 0 idle, 1 preparing, 2 accepting
        self.promises: dict[str, tuple[Ballot | None, Any]] = {}
        self.proposal: Any = None
        self.ticks = 0
        self.next_try = 0
        self.failures = 0
        self.ballots_tried = 0
        self.alive: dict[str, int] = {}
        # learner state
        self.votes: dict[Ballot, set[str]] = {}
        self.chosen: Any = None
        self.chosen_at: float | None = None

    @property
    def is_proposer(self) -> bool:
        return self.node_id in self.proposers

    # -- Process ---------------------------------------------------------------------

    def start(self, io: Io) -> None:
        if self.is_proposer and self.value is not None:
            self.next_try = 0

    def tick(self, io: Io) -> None:
        self.ticks += 1
        if not self.is_proposer or self.chosen_at is not None:
            return
        if self.mode == "distinguished" and self.ticks % self.alive_ticks == 1:
            for p in self.proposers:
                if p != self.node_id:
                    io.send(p, BasicAlive(self.node_id))
        if self.value is None or self.ticks < self.next_try:
            return
        if self.mode == "distinguished" and self._distinguished() != self.node_id:
            io.send(self._distinguished(), BasicPropose(self.value))
            self.next_try = self.ticks + self.retry_ticks
            return
        self._start_ballot(io)

    def receive(self, io: Io, env: Envelope) -> None:
        body, src = env.body, env.source
        if src not in self.known and not isinstance(body, BasicPropose):
            log.warning("%s: rejected %s from unknown sender %s", self.node_id,
                        type(body).__name__, src)
            io.trace("basic.reject", src=src, msg=type(body).__name__)
            return
        if isinstance(body, BasicPropose):
            if self.value is None:
                self.value = body.value
        elif isinstance(body, BasicAlive):
            self.alive[body.proposer] = self.ticks
        elif isinstance(body, BasicPrepare):
            self._on_prepare(io, src, body)
        elif isinstance(body, BasicAccept):
            self._on_accept(io, src, body)
        elif isinstance(body, BasicPromise):
            self._on_promise(io, src, body)
        elif isinstance(body, BasicAccepted):
            self._on_accepted(io, src, body)
        elif isinstance(body, BasicNack):
            self._on_nack(io, body)

    # -- proposer --------------------------------------------------------------------

    def _distinguished(self) -> str:
        live = [p for p in self.proposers
                if p == self.node_id or self.ticks - self.alive.get(p, -10**9) <= 3 * self.alive_ticks]
        return min(live)

    def _start_ballot(self, io: Io) -> None:
        self.round += 1
        io.put("basic.prop", "round", self.round)
        self.ballot = (self.round, self.node_id)
        self.ballots_tried += 1
        self.phase, self.promises = 1, {}
        self.next_try = self.ticks + self._retry_delay(io)
        io.trace("basic.prepare", ballot=list(self.ballot))
        for a in self.acceptors:
            io.send(a, BasicPrepare(self.ballot))

    def _retry_delay(self, io: Io) -> int:
        if self.mode == "naive":
            return self.retry_ticks
        spread = self.retry_ticks * (1 << min(self.failures, MAX_BACKOFF_EXP))
        return self.retry_ticks + io.rng.randint(0, spread)

    def _on_promise(self, io: Io, src: str, m: BasicPromise) -> None:
        if self.phase != 1 or m.ballot != self.ballot or src not in self.acceptors:
            return
        self.promises[src] = (m.accepted_ballot, m.accepted_value)
        if len(self.promises) < len(self.acceptors) // 2 + 1:
            return
        prior = [(b, v) for b, v in self.promises.values() if b is not None]
        self.proposal = max(prior, key=lambda bv: bv[0])[1] if prior else self.value
        self.phase = 2
        io.trace("basic.accept", ballot=list(self.ballot), value=self.proposal,
                 adopted=bool(prior))
        for a in self.acceptors:
            io.send(a, BasicAccept(self.ballot, self.proposal))

    def _on_nack(self, io: Io, m: BasicNack) -> None:
        if m.ballot != self.ballot or self.phase == 0:
            return
        self.round = max(self.round, m.promised[0])
        self.phase = 0
        self.failures += 1
        io.trace("basic.preempted", ballot=list(m.ballot), by=list(m.promised))
        if self.mode == "distinguished":
            self.next_try = self.ticks + self._retry_delay(io)

    # -- acceptor --------------------------------------------------------------------

    def _on_prepare(self, io: Io, src: str, m: BasicPrepare) -> None:
        if m.ballot < self.promised:
            io.send(src, BasicNack(m.ballot, self.promised))
            return
        if m.ballot > self.promised:
            self.promised = m.ballot
            io.put("basic.acc", "promised", list(m.ballot))
            if self.audit is not None:
                self.audit.append(("promise", m.ballot))
        ab, av = self.accepted if self.accepted is not None else (None, None)
        io.send(src, BasicPromise(m.ballot, ab, av))

    def _on_accept(self, io: Io, src: str, m: BasicAccept) -> None:
        if m.ballot < self.promised:
            io.send(src, BasicNack(m.ballot, self.promised))
            return
        self.promised = m.ballot
        self.accepted = (m.ballot, m.value)
        io.put("basic.acc", "promised", list(m.ballot))
        io.put("basic.acc", "accepted", [m.ballot[0], m.ballot[1], m.value])
        if self.audit is not None:
            self.audit.append(("accept", m.ballot, m.value))
        for node in sorted({src, *self.learners}):
            io.send(node, BasicAccepted(m.ballot, m.value))

    # -- learner ---------------------------------------------------------------------

    def _on_accepted(self, io: Io, src: str, m: BasicAccepted) -> None:
        if src not in self.acceptors:
            return
        voters = self.votes.setdefault(m.ballot, set())
        voters.add(src)
        if len(voters) >= len(self.acceptors) // 2 + 1 and self.chosen_at is None:
            self.chosen, self.chosen_at = m.value, io.now
            self.phase = 0
            if self.audit is not None:
                self.audit.append(("learn", m.value))
            io.trace("basic.chosen", value=m.value, ballot=list(m.ballot))
