"""Hypothesis stateful tests of the lock manager.

1. Against a naive model (table-level locks, no deadlock action): after every step the
   granted groups and the waiting requests are exactly the model's. The model recomputes
   grants from scratch by scanning every queue until nothing changes.
2. Under every deadlock policy with two-level (table, row) locks: the invariants hold
   after every step -- granted locks compatible, no grantable request left waiting, every
   row lock under a covering intention lock, and the policy's own guarantee about the
   waits-for graph (acyclic for detect; old->young edges only for wait-die; young->old
   (or to a prepared holder) for wound-wait).
"""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from giants.core.errors import LocalProtocolError, TxnAborted
from giants.twopl import (
    DeadlockPolicy,
    LockManager,
    LockMode,
    compatible,
    covers,
    find_cycle,
    intention_for,
    supremum,
)

NAMES = ["t0", "t1", "t2", "t3"]
TABLES = ["A", "B", "C"]
ALL_MODES = list(LockMode)
ROW_MODES = [LockMode.S, LockMode.X]


class NaiveModel:
    """Single-level locks: granted map and FIFO queue per resource, recomputed naively."""

    def __init__(self) -> None:
        self.granted: dict[str, dict[str, LockMode]] = {}
        self.queue: dict[str, list[tuple[str, LockMode, bool]]] = {}

    def lock(self, txn: str, res: str, mode: LockMode) -> str:
        held = self.granted.get(res, {}).get(txn)
        want = supremum(held, mode) if held else mode
        if held == want:
            return "granted"
        q = self.queue.setdefault(res, [])
        others = [m for t, m in self.granted.get(res, {}).items() if t != txn]
        if held is not None and all(want in _compat_set(m) for m in others):
            self.granted[res][txn] = want       # a compatible conversion: at once
            return "granted"
        if held is None and not q and all(want in _compat_set(m) for m in others):
            self.granted.setdefault(res, {})[txn] = want
            return "granted"
        if held is not None:
            q.insert(sum(1 for e in q if e[2]), (txn, want, True))
        else:
            q.append((txn, want, False))
        self.fix()
        return "waiting" if any(e[0] == txn for e in self.queue.get(res, [])) else "granted"

    def drop(self, txn: str) -> None:
        for g in self.granted.values():
            g.pop(txn, None)
        for res in self.queue:
            self.queue[res] = [e for e in self.queue[res] if e[0] != txn]
        self.fix()

    def fix(self) -> None:
        changed = True
        while changed:
            changed = False
            for res, q in self.queue.items():
                if not q:
                    continue
                txn, want, _ = q[0]
                others = [m for t, m in self.granted.get(res, {}).items() if t != txn]
                if all(want in _compat_set(m) for m in others):
                    q.pop(0)
                    self.granted.setdefault(res, {})[txn] = want
                    changed = True

    def holders(self, res: str) -> dict[str, LockMode]:
        return {t: m for t, m in self.granted.get(res, {}).items()}

    def waiters(self, res: str) -> list[tuple[str, LockMode]]:
        return [(t, m) for t, m, _ in self.queue.get(res, [])]


def _compat_set(m: LockMode) -> set[LockMode]:
    return {x for x in LockMode if compatible(m, x)}


class AgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = LockManager("timeout", wait_timeout_s=1e9)   # FIFO only; never ticks
        self.model = NaiveModel()
        self.gen = itertools.count()
        self.names: dict[str, str] = {}
        for n in NAMES:
            self._fresh(n)

    def _fresh(self, slot: str) -> None:
        name = f"{slot}.{next(self.gen)}"
        self.names[slot] = name
        self.m.begin(name, float(len(self.names) + next(self.gen)))

    @rule(slot=st.sampled_from(NAMES), table=st.sampled_from(TABLES),
          mode=st.sampled_from(ALL_MODES))
    def lock(self, slot: str, table: str, mode: LockMode) -> None:
        txn = self.names[slot]
        if self.m.waiting_on(txn) is not None:
            with pytest.raises(LocalProtocolError):
                self.m.lock(txn, (table,), mode)
            return
        got = self.m.lock(txn, (table,), mode)
        assert got == self.model.lock(txn, table, mode)

    @rule(slot=st.sampled_from(NAMES), commit=st.booleans())
    def finish(self, slot: str, commit: bool) -> None:
        txn = self.names[slot]
        if commit:
            self.m.release_all(txn)
        else:
            self.m.abort(txn, "test")
            with pytest.raises(TxnAborted):
                self.m.lock(txn, ("A",), LockMode.S)
        self.model.drop(txn)
        self._fresh(slot)

    @invariant()
    def same_as_model(self) -> None:
        for t in TABLES:
            assert self.m.holders((t,)) == self.model.holders(t)
            assert self.m.waiters((t,)) == self.model.waiters(t)


TestAgainstModel = AgainstModel.TestCase
TestAgainstModel.settings = settings(max_examples=30, stateful_step_count=30, deadline=None)


class PolicyInvariants(RuleBasedStateMachine):
    policy = DeadlockPolicy.DETECT

    def __init__(self) -> None:
        super().__init__()
        self.m = LockManager(self.policy, wait_timeout_s=2.0)
        self.now = 0.0
        self.gen = itertools.count()
        self.names: dict[str, str] = {}
        for n in NAMES:
            self._fresh(n)

    def _fresh(self, slot: str) -> None:
        name = f"{slot}.{next(self.gen)}"
        self.names[slot] = name
        self.m.begin(name, self.now + next(self.gen) * 1e-6)

    @rule(slot=st.sampled_from(NAMES), table=st.sampled_from(TABLES[:2]),
          row=st.sampled_from(["", "1", "2"]), mode=st.sampled_from(ALL_MODES))
    def lock(self, slot: str, table: str, row: str, mode: LockMode) -> None:
        txn = self.names[slot]
        if not self.m.is_active(txn):
            self._fresh(slot)          # aborted by the policy: the client retries anew
            return
        if self.m.waiting_on(txn) is not None:
            return
        if self.m.is_prepared(txn):
            with pytest.raises(LocalProtocolError):
                self.m.lock(txn, (table,), LockMode.S, now=self.now)
            return
        resource = (table, row) if row else (table,)
        if row and mode not in ROW_MODES:
            mode = LockMode.S
        try:
            self.m.lock(txn, resource, mode, now=self.now)
        except TxnAborted:
            assert not self.m.is_active(txn)

    @rule(slot=st.sampled_from(NAMES))
    def commit(self, slot: str) -> None:
        txn = self.names[slot]
        if self.m.is_active(txn) and self.m.waiting_on(txn) is None:
            self.m.release_all(txn)
            self._fresh(slot)

    @rule(slot=st.sampled_from(NAMES))
    def prepare(self, slot: str) -> None:
        txn = self.names[slot]
        if self.m.is_active(txn) and self.m.waiting_on(txn) is None:
            self.m.mark_prepared(txn)

    @rule(dt=st.floats(0.1, 3.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.m.tick(self.now)

    @invariant()
    def granted_groups_compatible_and_queues_settled(self) -> None:
        for res in self.m.resources():
            holders = self.m.holders(res)
            for (_a, ma), (_b, mb) in itertools.combinations(holders.items(), 2):
                assert compatible(ma, mb), (res, holders)
            waiters = self.m.waiters(res)
            if waiters:
                head, mode = waiters[0]
                assert not all(compatible(m, mode) for t, m in holders.items() if t != head)

    @invariant()
    def rows_under_intention_locks(self) -> None:
        for txn in self.m.active():
            held = self.m.held(txn)
            for res, mode in held.items():
                if len(res) == 2:
                    assert covers(held[res[:1]], intention_for(mode)), (txn, held)

    @invariant()
    def policy_guarantee(self) -> None:
        graph = self.m.waits_for()
        for a, succ in graph.items():
            assert succ, f"{a} waits for nobody"
        if self.policy is DeadlockPolicy.DETECT:
            assert find_cycle(graph) is None
        for a, succ in graph.items():
            for b in succ:
                if self.policy is DeadlockPolicy.WAIT_DIE:
                    assert self.m.priority(a) < self.m.priority(b), (a, b)
                if self.policy is DeadlockPolicy.WOUND_WAIT:
                    assert self.m.priority(a) > self.m.priority(b) or b not in graph, (a, b)


def _policy_case(policy: DeadlockPolicy) -> type:
    cls = type(f"Invariants_{policy.name}", (PolicyInvariants,), {"policy": policy})
    case = cls.TestCase
    case.settings = settings(max_examples=20, stateful_step_count=40, deadline=None)
    return case


TestDetect = _policy_case(DeadlockPolicy.DETECT)
TestWaitDie = _policy_case(DeadlockPolicy.WAIT_DIE)
TestWoundWait = _policy_case(DeadlockPolicy.WOUND_WAIT)
TestTimeout = _policy_case(DeadlockPolicy.TIMEOUT)
