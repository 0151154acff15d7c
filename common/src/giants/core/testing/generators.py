"""Reference stores that are correct by construction, for testing the checkers.

A checker is only worth trusting if it accepts every history a correct system can
produce and rejects histories that no correct system can produce (Kingsbury's Knossos
and Lowe's "Testing for linearizability", section 6, validate their checkers the same
way). These small discrete-event simulations produce the first kind:

* ``simulate_kv_store`` -- an atomic key-value store of registers: every operation takes
  effect at one instant between its invocation and its response (so the history is
  linearizable by construction), with random delays so operations overlap; some
  operations fail (no effect) and some end in ``info`` (took effect or not, unknown).
* ``simulate_txn_store`` -- a store running transactions one at a time (so the
  committed ones are serializable by construction); some abort, some have an unknown
  outcome, and unique values are written per key.

Randomness comes from the ``rng`` the caller passes (a seeded ``random.Random``), so a
seed reproduces a history exactly. Time is virtual.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from giants.core.process import Rng
from giants.core.testing.history import History

__all__ = ["StoreRun", "simulate_kv_store", "simulate_txn_store"]


@dataclass(frozen=True)
class StoreRun:
    """A simulated run: the history, every value some operation tried to write, and the
    store's final state (key -> value)."""

    history: History
    written: frozenset[Any]
    final: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class _Pending:
    process: int
    op: int
    f: str
    key: Hashable
    value: Any
    fate: str            # "ok", "fail", "info-applied", "info-lost"
    output: Any = None


def simulate_kv_store(
    rng: Rng, *, n_ops: int = 2000, n_keys: int = 20, n_clients: int = 10,
    info_rate: float = 0.01, fail_rate: float = 0.02, max_latency_s: float = 0.01,
    cas_rate: float = 0.2, read_rate: float = 0.45,
) -> StoreRun:
    """Run ``n_clients`` concurrent clients doing ``n_ops`` register operations on keys
    ``k0..k{n_keys-1}`` against an atomic store, and record the history.

    Each operation's linearization point is uniform in its latency window. A client
    that sees ``info`` continues under a fresh process id, as Jepsen requires.
    """
    h = History()
    store: dict[str, Any] = {}
    written: set[Any] = set()
    queue: list[tuple[float, int, str, Any]] = []
    seq = 0

    def push(t: float, kind: str, data: Any) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (t, seq, kind, data))

    for client in range(n_clients):
        push(rng.uniform(0, max_latency_s), "invoke", client)
    next_process, started, next_value = n_clients, 0, 1
    process_of = list(range(n_clients))
    while queue:
        t, _, kind, data = heapq.heappop(queue)
        if kind == "invoke":
            if started >= n_ops:
                continue
            started += 1
            key = f"k{rng.randint(0, n_keys - 1)}"
            f, value = _choose_op(rng, cas_rate, read_rate, next_value, store.get(key))
            next_value += 1
            if f != "read":
                written.add(value[1] if f == "cas" else value)
            op = h.invoke(process_of[data], f, value, key=key, time=t)
            roll = rng.random()
            fate = ("fail" if roll < fail_rate else "info-applied" if roll < fail_rate + info_rate
                    else "info-lost" if roll < fail_rate + 2 * info_rate else "ok")
            p = _Pending(data, op, f, key, value, fate)
            apply_at = t + rng.uniform(0, max_latency_s)
            push(apply_at, "apply", p)
            push(apply_at + rng.uniform(0, max_latency_s), "respond", p)
        elif kind == "apply":
            if data.fate in ("ok", "info-applied"):
                data.output = _apply(store, data.f, data.key, data.value)
        else:
            _respond(h, data, t)
            if data.fate.startswith("info"):
                process_of[data.process] = next_process
                next_process += 1
            push(t + rng.uniform(0, max_latency_s), "invoke", data.process)
    return StoreRun(h, frozenset(written), dict(store))


def _choose_op(rng: Rng, cas_rate: float, read_rate: float, fresh: int,
               current: Any) -> tuple[str, Any]:
    roll = rng.random()
    if roll < read_rate:
        return "read", None
    if roll < read_rate + cas_rate:
        # Usually guess the current value so that some cas operations succeed.
        expected = current if rng.random() < 0.5 else fresh - 1 - rng.randint(0, 2)
        return "cas", (expected, fresh)
    return "write", fresh


def _apply(store: dict[str, Any], f: str, key: str, value: Any) -> Any:
    if f == "read":
        return store.get(key)
    if f == "write":
        store[key] = value
        return value
    expected, new = value
    if store.get(key) == expected:
        store[key] = new
        return True
    return False


def _respond(h: History, p: _Pending, t: float) -> None:
    if p.fate == "ok":
        h.ok(p.op, p.output, time=t)
    elif p.fate == "fail":
        h.fail(p.op, time=t, error="Unavailable")
    else:
        h.info(p.op, time=t, error="Timeout")


def simulate_txn_store(
    rng: Rng, *, n_txns: int = 200, n_keys: int = 5, max_ops: int = 4,
    abort_rate: float = 0.1, unknown_rate: float = 0.05,
) -> list[Any]:
    """Run ``n_txns`` read/write transactions serially against a store of ``n_keys`` keys.

    Returns ``serializability.Txn`` records in execution order; aborted transactions
    had no effect; ``unknown`` ones took effect or not at random. Every write writes a
    value unique to its key.
    """
    from giants.core.testing.serializability import Txn

    store: dict[str, Any] = {}
    txns = []
    fresh = 0
    for n in range(n_txns):
        roll = rng.random()
        status = ("aborted" if roll < abort_rate else
                  "unknown" if roll < abort_rate + unknown_rate else "committed")
        applies = status == "committed" or (status == "unknown" and rng.random() < 0.5)
        view = dict(store)
        ops: list[tuple[str, str, Any]] = []
        for _ in range(1 + rng.randint(0, max_ops - 1)):
            key = f"k{rng.randint(0, n_keys - 1)}"
            if rng.random() < 0.5:
                ops.append(("r", key, view.get(key)))
            else:
                fresh += 1
                view[key] = fresh
                ops.append(("w", key, fresh))
        if applies:
            store = view
        txns.append(Txn(id=n, ops=tuple(ops), status=status))
    return txns
