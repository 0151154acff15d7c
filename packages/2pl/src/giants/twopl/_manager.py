"""The lock manager: a sans-I/O lock table with strict two-phase locking.

Eswaran, Gray, Lorie, Traiger (CACM 1976) for two-phase locking and lock conversion;
Gray, Lorie, Putzolu, Traiger (1976) for multiple-granularity (intention) locks;
Bernstein, Hadzilacos, Goodman (1987, ch. 3) for the lock table and deadlock handling.

The lock table maps a resource -- a path tuple, ``("accounts",)`` for a table and
``("accounts", "alice")`` for one of its rows -- to the group of granted locks and a
FIFO queue of waiting requests.

Rules:

* **Compatibility**: a request is granted only if its mode is compatible with every
  lock other transactions hold on the resource (``giants.twopl._modes``).
* **FIFO fairness**: a new request never overtakes a waiting one: it is granted at once
  only if the queue is empty. **Conversions** (upgrades: a holder of ``S`` asking for
  ``X``) wait at the head of the queue, ahead of new requests, as System R did.
* **Hierarchy**: ``lock(txn, ("t", "r"), S)`` first takes the intention mode (``IS``
  for ``S``, ``IX`` for ``X``) on ``("t",)``, then ``S`` on the row; a request waiting
  on the table proceeds to the row once the table lock is granted.
* **Two phases**: locks are released by ``release_all`` at commit or abort (strict 2PL:
  nothing is released early, so no cascading aborts and the commit order is a
  serialization order). ``release`` of a single lock is allowed but moves the
  transaction into its shrinking phase: any later ``lock`` is a ``LocalProtocolError``.
* **Deadlocks** are handled by the manager's ``DeadlockPolicy`` (``_deadlock``); an
  aborted transaction's locks are released at once and it is remembered (bounded), so
  a later request from it is refused with ``TxnAborted`` and changes nothing.
* **Prepared** transactions (``mark_prepared``: a 2PC participant voted YES) are never
  chosen as victims or wounded: their fate belongs to the coordinator.

Sans-I/O: time comes in as ``now`` arguments; nothing here blocks. ``lock`` returns
``"granted"``, ``"waiting"`` or raises ``TxnAborted`` (the requester was aborted by the
policy). Whatever happens to *other* transactions -- a waiter granted, a victim or
wounded transaction aborted -- comes out of ``take_events()`` as ``Granted`` /
``Aborted`` records, which the owner (a 2PC participant) turns into replies. Every
abort by the policy is an ``Aborted`` event, the requester's own included (its
``TxnAborted`` raise carries the same news).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from giants.core.errors import LocalProtocolError, TxnAborted
from giants.twopl._deadlock import DeadlockPolicy, find_cycle
from giants.twopl._modes import LockMode, compatible, covers, intention_for, supremum

__all__ = ["LockManager", "Granted", "Aborted", "Resource", "LockEvent", "MAX_REMEMBERED_ABORTS"]

Resource = tuple[str, ...]
Priority = tuple[float, str]

# Aborted transactions are remembered so their late requests are refused; bounded so a
# long-running node does not grow without end (far above the transactions in flight).
MAX_REMEMBERED_ABORTS = 10_000
# A default for the "timeout" policy when none is given.
DEFAULT_WAIT_TIMEOUT_S = 0.5


@dataclass(frozen=True, slots=True)
class Granted:
    """A waiting ``lock`` call of ``txn`` completed: it now holds ``mode`` on ``resource``."""

    txn: str
    resource: Resource
    mode: LockMode


@dataclass(frozen=True, slots=True)
class Aborted:
    """``txn`` was aborted by the deadlock policy (``reason``); its locks are released."""

    txn: str
    reason: str


LockEvent = Granted | Aborted


@dataclass(slots=True)
class _Request:
    txn: str
    mode: LockMode        # the mode wanted (for a conversion: the supremum)
    conversion: bool
    since: float


@dataclass(slots=True)
class _Entry:
    granted: dict[str, LockMode] = field(default_factory=dict)
    queue: list[_Request] = field(default_factory=list)


@dataclass(slots=True)
class _Txn:
    name: str
    priority: Priority
    held: dict[Resource, LockMode] = field(default_factory=dict)
    plan: list[tuple[Resource, LockMode]] = field(default_factory=list)
    target: tuple[Resource, LockMode] | None = None
    waiting_on: Resource | None = None
    shrinking: bool = False
    prepared: bool = False


class LockManager:
    """See the module docstring. ``policy`` is a ``DeadlockPolicy`` (or its value);
    ``wait_timeout_s`` bounds every wait (required semantics of ``timeout``; an optional
    backstop for the other policies, e.g. for cycles spanning several managers)."""

    def __init__(self, policy: DeadlockPolicy | str = DeadlockPolicy.WOUND_WAIT, *,
                 wait_timeout_s: float | None = None) -> None:
        self.policy = DeadlockPolicy(policy)
        if self.policy is DeadlockPolicy.TIMEOUT and wait_timeout_s is None:
            wait_timeout_s = DEFAULT_WAIT_TIMEOUT_S
        self.wait_timeout_s = wait_timeout_s
        self._table: dict[Resource, _Entry] = {}
        self._txns: dict[str, _Txn] = {}
        self._aborted: OrderedDict[str, str] = OrderedDict()
        self._events: list[LockEvent] = []
        self._dirty: list[Resource] = []
        self.counters: dict[str, int] = {"granted": 0, "waited": 0, "aborted": 0}

    # -- transactions -------------------------------------------------------------------

    def begin(self, txn: str, ts: float) -> None:
        """Register ``txn`` with timestamp ``ts`` (smaller is older; ties broken by name).

        Raises ``TxnAborted`` if ``txn`` was aborted, ``LocalProtocolError`` if it is
        already active. Nothing changes on a raise."""
        self._refuse_aborted(txn)
        if txn in self._txns:
            raise LocalProtocolError(f"transaction {txn} already began")
        self._txns[txn] = _Txn(txn, (float(ts), txn))

    def is_active(self, txn: str) -> bool:
        return txn in self._txns

    def is_prepared(self, txn: str) -> bool:
        t = self._txns.get(txn)
        return t is not None and t.prepared

    def was_aborted(self, txn: str) -> str | None:
        """The reason ``txn`` was aborted, if it was (and is still remembered)."""
        return self._aborted.get(txn)

    def mark_prepared(self, txn: str) -> None:
        """``txn`` voted YES in 2PC: never a victim or wounded from now on."""
        t = self._get(txn)
        if t.waiting_on is not None:
            raise LocalProtocolError(f"{txn} cannot prepare while waiting for a lock")
        t.prepared = True

    def release_all(self, txn: str) -> None:
        """Commit or abort ended ``txn``: release every lock it holds or waits for.
        Unknown transactions are ignored (the call is idempotent)."""
        t = self._txns.pop(txn, None)
        if t is not None:
            self._drop(t)
            self._settle()

    def abort(self, txn: str, reason: str = "aborted") -> None:
        """Abort ``txn`` from outside (its owner decided so); remembered like a victim.
        No ``Aborted`` event is emitted for it: the caller already knows."""
        t = self._txns.pop(txn, None)
        self._remember_abort(txn, reason)
        if t is not None:
            self._drop(t)
            self._settle()

    # -- locking ------------------------------------------------------------------------

    def lock(self, txn: str, resource: Resource, mode: LockMode | str, now: float = 0.0
             ) -> Literal["granted", "waiting"]:
        """Take ``mode`` on ``resource`` (and the intention locks on its ancestors).

        Returns ``"granted"`` or ``"waiting"`` (a ``Granted`` event follows later, or an
        ``Aborted`` one). Raises ``TxnAborted`` if the transaction was aborted earlier
        or is aborted now by the deadlock policy; ``LocalProtocolError`` for an unknown
        transaction, one already waiting, or one in its shrinking phase. Nothing changes
        on a ``LocalProtocolError`` or a refusal of an already-aborted transaction.
        """
        mode = LockMode(mode)
        if not resource:
            raise LocalProtocolError("a resource is a non-empty path tuple")
        self._refuse_aborted(txn)
        t = self._get(txn)
        if t.waiting_on is not None:
            raise LocalProtocolError(f"{txn} is already waiting for {t.waiting_on}")
        if t.shrinking:
            raise LocalProtocolError(f"2PL: {txn} released a lock and may not acquire more")
        if t.prepared:
            raise LocalProtocolError(f"{txn} is prepared: it takes no new locks")
        plan = [(resource[:i], intention_for(mode)) for i in range(1, len(resource))]
        plan.append((resource, mode))
        t.plan = [(r, m) for r, m in plan if r not in t.held or not covers(t.held[r], m)]
        t.target = (resource, mode)
        status = self._advance(t, now)
        self._settle()
        if txn not in self._txns:
            raise TxnAborted(f"{txn} aborted: {self._aborted.get(txn, 'deadlock')}")
        if status == "waiting" and t.waiting_on is None:
            # granted within this call (the policy removed the blockers): answer directly
            self._events = [e for e in self._events if not (isinstance(e, Granted)
                                                            and e.txn == txn)]
            return "granted"
        return "waiting" if t.waiting_on is not None else "granted"

    def release(self, txn: str, resource: Resource) -> None:
        """Release one lock early: ``txn`` enters its shrinking phase (no more locks).

        Raises ``LocalProtocolError`` if ``txn`` does not hold it or still holds locks
        below it (children go first in multiple-granularity locking)."""
        t = self._get(txn)
        if resource not in t.held:
            raise LocalProtocolError(f"{txn} holds no lock on {resource}")
        if any(r[: len(resource)] == resource and r != resource for r in t.held):
            raise LocalProtocolError(f"{txn} still holds locks below {resource}")
        t.shrinking = True
        del t.held[resource]
        del self._table[resource].granted[txn]
        self._dirty.append(resource)
        self._settle()

    def tick(self, now: float) -> None:
        """Abort every request that has waited ``wait_timeout_s`` (if set)."""
        if self.wait_timeout_s is None:
            return
        expired = []
        for t in self._txns.values():
            if t.waiting_on is not None:
                req = self._request_of(t)
                if now - req.since >= self.wait_timeout_s:
                    expired.append(t.name)
        for name in expired:
            self._kill(name, "lock wait timeout")
        self._settle()

    def take_events(self) -> list[LockEvent]:
        events, self._events = self._events, []
        return events

    # -- inspection ---------------------------------------------------------------------

    def holders(self, resource: Resource) -> dict[str, LockMode]:
        entry = self._table.get(resource)
        return dict(entry.granted) if entry else {}

    def waiters(self, resource: Resource) -> list[tuple[str, LockMode]]:
        entry = self._table.get(resource)
        return [(r.txn, r.mode) for r in entry.queue] if entry else []

    def held(self, txn: str) -> dict[Resource, LockMode]:
        t = self._txns.get(txn)
        return dict(t.held) if t else {}

    def waiting_on(self, txn: str) -> Resource | None:
        t = self._txns.get(txn)
        return t.waiting_on if t else None

    def active(self) -> list[str]:
        return list(self._txns)

    def priority(self, txn: str) -> Priority:
        return self._get(txn).priority

    def resources(self) -> list[Resource]:
        return list(self._table)

    def waits_for(self) -> dict[str, set[str]]:
        """The waits-for graph: each waiting transaction -> those it waits for."""
        graph: dict[str, set[str]] = {}
        for t in self._txns.values():
            if t.waiting_on is not None:
                entry = self._table[t.waiting_on]
                graph[t.name] = self._blockers(entry, self._request_of(t))
        return graph

    # -- internals ----------------------------------------------------------------------

    def _get(self, txn: str) -> _Txn:
        t = self._txns.get(txn)
        if t is None:
            raise LocalProtocolError(f"unknown transaction {txn} (call begin first)")
        return t

    def _refuse_aborted(self, txn: str) -> None:
        if txn in self._aborted:
            raise TxnAborted(f"{txn} was aborted ({self._aborted[txn]}); its requests are refused")

    def _request_of(self, t: _Txn) -> _Request:
        assert t.waiting_on is not None
        for req in self._table[t.waiting_on].queue:
            if req.txn == t.name:
                return req
        raise AssertionError(f"{t.name} waits on {t.waiting_on} without a request")

    def _advance(self, t: _Txn, now: float) -> Literal["granted", "waiting", "aborted"]:
        """Work through ``t.plan`` until a step must wait; emit nothing."""
        while t.plan:
            resource, mode = t.plan[0]
            entry = self._table.setdefault(resource, _Entry())
            held = entry.granted.get(t.name)
            want = supremum(held, mode) if held is not None else mode
            if held is not None and held == want:
                t.plan.pop(0)
                continue
            others_ok = all(compatible(m, want) for o, m in entry.granted.items() if o != t.name)
            if others_ok and (held is not None or not entry.queue):
                self._grant(t, resource, want)
                t.plan.pop(0)
                continue
            req = _Request(t.name, want, held is not None, now)
            if req.conversion:
                pos = sum(1 for r in entry.queue if r.conversion)
                entry.queue.insert(pos, req)
            else:
                entry.queue.append(req)
            t.waiting_on = resource
            self.counters["waited"] += 1
            self._enforce(entry)
            if t.name not in self._txns:
                return "aborted"
            return "waiting"
        return "granted"

    def _grant(self, t: _Txn, resource: Resource, mode: LockMode) -> None:
        self._table[resource].granted[t.name] = mode
        t.held[resource] = mode
        self.counters["granted"] += 1

    def _blockers(self, entry: _Entry, req: _Request) -> set[str]:
        out = {o for o, m in entry.granted.items() if o != req.txn and not compatible(m, req.mode)}
        for other in entry.queue:
            if other is req:
                break
            if other.txn != req.txn:
                out.add(other.txn)      # strict FIFO: it waits for everyone ahead of it
        return out

    def _enforce(self, entry: _Entry) -> None:
        """Apply the deadlock policy after a request joined ``entry``'s queue."""
        if self.policy is DeadlockPolicy.DETECT:
            self._break_cycles()
            return
        if self.policy is DeadlockPolicy.TIMEOUT:
            return
        for req in list(entry.queue):
            if req.txn not in self._txns or req not in entry.queue:
                continue
            me = self._txns[req.txn].priority
            blockers = [self._txns[b] for b in sorted(self._blockers(entry, req))]
            if self.policy is DeadlockPolicy.WAIT_DIE:
                if any(b.priority < me for b in blockers):
                    self._kill(req.txn, "wait-die: younger requester died")
            else:
                for b in blockers:
                    if b.priority > me and not b.prepared:
                        self._kill(b.name, f"wound-wait: wounded by older {req.txn}")

    def _break_cycles(self) -> None:
        while True:
            cycle = find_cycle(self.waits_for())
            if cycle is None:
                return
            candidates = [self._txns[n] for n in cycle if not self._txns[n].prepared]
            assert candidates, f"a deadlock cycle of prepared transactions: {cycle}"
            victim = max(candidates, key=lambda t: t.priority)
            self._kill(victim.name, f"deadlock victim (cycle {' -> '.join(cycle)})")

    def _kill(self, txn: str, reason: str) -> None:
        t = self._txns.pop(txn, None)
        if t is None:
            return
        self._remember_abort(txn, reason)
        self.counters["aborted"] += 1
        self._events.append(Aborted(txn, reason))
        self._drop(t)

    def _remember_abort(self, txn: str, reason: str) -> None:
        self._aborted[txn] = reason
        self._aborted.move_to_end(txn)
        while len(self._aborted) > MAX_REMEMBERED_ABORTS:
            self._aborted.popitem(last=False)

    def _drop(self, t: _Txn) -> None:
        """Remove every trace of ``t`` from the lock table; mark resources to regrant."""
        touched: Iterable[Resource] = list(t.held) + ([t.waiting_on] if t.waiting_on else [])
        for resource in touched:
            entry = self._table.get(resource)
            if entry is None:
                continue
            entry.granted.pop(t.name, None)
            entry.queue = [r for r in entry.queue if r.txn != t.name]
            self._dirty.append(resource)
        t.held.clear()
        t.waiting_on = None
        t.plan = []

    def _settle(self) -> None:
        """Grant whatever became grantable, in FIFO order, until nothing changes."""
        while self._dirty:
            resource = self._dirty.pop(0)
            entry = self._table.get(resource)
            if entry is None:
                continue
            while entry.queue:
                req = entry.queue[0]
                if not all(compatible(m, req.mode) for o, m in entry.granted.items()
                           if o != req.txn):
                    break
                entry.queue.pop(0)
                t = self._txns[req.txn]
                self._grant(t, resource, req.mode)
                t.waiting_on = None
                t.plan.pop(0)
                if self._advance(t, req.since) == "granted":
                    assert t.target is not None
                    self._events.append(Granted(t.name, t.target[0], t.target[1]))
                if resource not in self._table:
                    break
            if not entry.granted and not entry.queue:
                self._table.pop(resource, None)
