"""Paxos' safety invariants, checked on every simulated step ("Paxos Made Simple" §2.1-2.2).

A checker attaches to a ``Simulation`` (``sim.after_event``) and, after every event,
reads the audit events the cores recorded (``options={"audit": True}``) and each live
acceptor's promise. It computes **chosen** itself, as the paper defines it -- a value
accepted by a majority of the slot's voters in one ballot -- independently of what any
node believes, and fails (``InvariantViolation``, with the seed) when:

* an acceptor's promise decreases, including across a crash and restart (P1);
* an acceptor accepts below its promise;
* one ballot carries two values for one slot;
* two different values are chosen for one slot;
* a ballot at or above the one that chose a value carries another value for that slot
  (P2b: so a chosen value can never change);
* a learner learns a value that was not chosen, or not the one chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from giants.core.sim import Simulation
from giants.paxos._config import Config, ConfigHistory, unpack_config
from giants.paxos._messages import Ballot

__all__ = ["InvariantViolation", "MultiPaxosChecker", "BasicPaxosChecker"]

ZERO: Ballot = (0, "")


class InvariantViolation(AssertionError):
    """A Paxos safety invariant broke in a simulation."""


class _Chosen:
    """Chosen values computed from acceptances: ``slot -> (first ballot, value)``."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.promised: dict[str, Ballot] = {}
        self.ballot_value: dict[tuple[Any, Ballot], Any] = {}
        self.votes: dict[tuple[Any, Ballot], set[str]] = {}
        self.chosen: dict[Any, tuple[Ballot, Any]] = {}

    def fail(self, what: str) -> None:
        raise InvariantViolation(f"seed {self.seed}: {what}")

    def see_promise(self, node: str, ballot: Ballot) -> None:
        old = self.promised.get(node, ZERO)
        if ballot < old:
            self.fail(f"{node} went back on its promise: {old} -> {ballot}")
        self.promised[node] = ballot

    def see_accept(self, node: str, slot: Any, ballot: Ballot, value: Any,
                   voters: Config) -> bool:
        """Record an acceptance; True when it made ``value`` chosen at ``slot``."""
        promised = self.promised.get(node, ZERO)
        if ballot < promised:
            self.fail(f"{node} accepted {ballot} at {slot} below its promise {promised}")
        self.promised[node] = ballot
        key = (slot, ballot)
        if self.ballot_value.setdefault(key, value) != value:
            self.fail(f"ballot {ballot} carries two values at {slot}: "
                      f"{self.ballot_value[key]!r} and {value!r}")
        chosen = self.chosen.get(slot)
        if chosen is not None:
            if ballot >= chosen[0] and value != chosen[1]:
                self.fail(f"slot {slot}: {chosen[1]!r} was chosen in {chosen[0]}, yet ballot "
                          f"{ballot} carries {value!r}")
            return False
        votes = self.votes.setdefault(key, set())
        votes.add(node)
        if not voters.is_quorum(votes):
            return False
        self.chosen[slot] = (ballot, value)
        for k in [k for k in self.votes if k[0] == slot]:
            del self.votes[k]
        return True

    def see_learn(self, node: str, slot: Any, value: Any) -> None:
        chosen = self.chosen.get(slot)
        if chosen is None:
            self.fail(f"{node} learnt {value!r} at {slot}, which was never chosen")
        elif chosen[1] != value:
            self.fail(f"{node} learnt {value!r} at {slot}, but {chosen[1]!r} was chosen")


class MultiPaxosChecker:
    """Per-step invariants of a cluster of ``ReplicatedService(MultiPaxos)`` nodes."""

    def __init__(self, sim: Simulation, nodes: Sequence[str], *, alpha: int,
                 voters: Sequence[str] | None = None) -> None:
        self.sim = sim
        self.nodes = list(nodes)
        self.alpha = alpha
        initial = list(voters if voters is not None else nodes)
        self.configs = ConfigHistory([(1, Config({n: n for n in initial}, {}))])
        self.state = _Chosen(sim.seed)
        self.steps = 0

    def attach(self) -> MultiPaxosChecker:
        self.sim.after_event.append(self.check)
        return self

    @property
    def chosen(self) -> dict[Any, tuple[Ballot, Any]]:
        return self.state.chosen

    def check(self, sim: Simulation) -> None:
        self.steps += 1
        for node in self.nodes:
            svc = sim.process(node)
            if svc is None:
                continue
            core = svc.consensus  # type: ignore[attr-defined]
            events = core.audit
            assert events is not None, "run the cores with options={'audit': True}"
            for ev in events:
                self._event(node, ev)
            events.clear()
            self.state.see_promise(node, core.log.promised)

    def _event(self, node: str, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "promise":
            self.state.see_promise(node, ev[1])
        elif kind == "accept":
            _, slot, ballot, vkind, data = ev
            if self.state.see_accept(node, slot, ballot, (vkind, data), self.configs.at(slot)):
                if vkind == "conf":
                    self.configs.add(slot + self.alpha, unpack_config(data))
        elif kind == "learn":
            _, slot, vkind, data = ev
            self.state.see_learn(node, slot, (vkind, data))


class BasicPaxosChecker:
    """Per-step invariants of one single-decree instance (``BasicPaxosNode``s)."""

    def __init__(self, sim: Simulation, nodes: Sequence[str], acceptors: Sequence[str]) -> None:
        self.sim = sim
        self.nodes = list(nodes)
        self.voters = Config({a: a for a in acceptors}, {})
        self.state = _Chosen(sim.seed)

    def attach(self) -> BasicPaxosChecker:
        self.sim.after_event.append(self.check)
        return self

    @property
    def chosen(self) -> Any:
        got = self.state.chosen.get(0)
        return None if got is None else got[1]

    def check(self, sim: Simulation) -> None:
        for node in self.nodes:
            proc = sim.process(node)
            if proc is None:
                continue
            events = proc.audit  # type: ignore[attr-defined]
            for ev in events:
                if ev[0] == "promise":
                    self.state.see_promise(node, ev[1])
                elif ev[0] == "accept":
                    self.state.see_accept(node, 0, ev[1], ev[2], self.voters)
                else:
                    self.state.see_learn(node, 0, ev[1])
            events.clear()
            self.state.see_promise(node, proc.promised)  # type: ignore[attr-defined]
