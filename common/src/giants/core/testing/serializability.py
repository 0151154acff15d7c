"""A serializability checker for read/write-register transactions: Adya's DSG.

Adya, Liskov, O'Neil, "Generalized Isolation Level Definitions" (ICDE 2000) §3-4: a
history is (conflict-)serializable when its direct serialization graph (DSG) over the
committed transactions has no cycle. Edges, for transactions Ti != Tj and a key x:

* ``ww`` -- Ti installed a version of x and Tj installed the next one;
* ``wr`` -- Tj read the version of x that Ti installed;
* ``rw`` -- Ti read a version of x and Tj installed the next one (an anti-dependency).

Every written value must be unique per key (so a read names its writer), and ``None``
stands for "absent", the initial version. The *version order* of each key -- which
committed write followed which -- comes from the store (``version_order``: key -> the
values in installation order, e.g. a shard's commit order). Without it only the order
implied by the history is used (the initial version first; a transaction that read
version v and then wrote v' puts v' after v), which finds fewer cycles.

Also reported (Adya's phenomena that need no graph): **G1a** aborted read (a value only
an aborted transaction wrote was read by a committed one), **G1b** intermediate read (a
value a transaction overwrote itself was read by another), and **internal
inconsistency** (a transaction did not read its own latest write). ``unknown``
transactions (the client never learned the outcome) count as committed when one of their
writes was read or appears in ``version_order``, else they are left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Txn", "SerializabilityResult", "check_serializable"]

Op = tuple[str, Hashable, Any]   # ("r" | "w", key, value)


@dataclass(frozen=True)
class Txn:
    """One transaction of a history: its operations in program order and its status
    (``committed``, ``aborted`` or ``unknown``)."""

    id: Hashable
    ops: tuple[Op, ...]
    status: str = "committed"


@dataclass
class SerializabilityResult:
    ok: bool
    anomalies: list[str] = field(default_factory=list)
    cycle: list[Hashable] | None = None
    edges: int = 0

    def __bool__(self) -> bool:
        return self.ok


def _final_writes(t: Txn) -> dict[Hashable, Any]:
    out: dict[Hashable, Any] = {}
    for kind, key, value in t.ops:
        if kind == "w":
            out[key] = value
    return out


def _external_reads(t: Txn) -> list[tuple[Hashable, Any]]:
    """Reads of keys the transaction had not written before (in program order)."""
    written: set[Hashable] = set()
    out = []
    for kind, key, value in t.ops:
        if kind == "w":
            written.add(key)
        elif key not in written:
            out.append((key, value))
    return out


def _internal_problems(t: Txn) -> list[str]:
    own: dict[Hashable, Any] = {}
    problems = []
    for kind, key, value in t.ops:
        if kind == "w":
            own[key] = value
        elif key in own and own[key] != value:
            problems.append(f"internal inconsistency: {t.id} wrote {key}={own[key]!r} "
                            f"then read {value!r}")
    return problems


def check_serializable(txns: Iterable[Txn],
                       version_order: Mapping[Any, Sequence[Any]] | None = None
                       ) -> SerializabilityResult:
    """Check a history; see the module docstring. Never raises for a bad history: every
    problem found is listed in ``anomalies``."""
    txns = list(txns)
    anomalies: list[str] = []
    writer: dict[tuple[Hashable, Any], Txn] = {}
    intermediate: dict[tuple[Hashable, Any], Txn] = {}
    for t in txns:
        anomalies += _internal_problems(t)
        final = _final_writes(t)
        for kind, key, value in t.ops:
            if kind != "w":
                continue
            if (key, value) in writer and writer[(key, value)] is not t:
                anomalies.append(f"value {key}={value!r} written by two transactions")
            writer[(key, value)] = t
            if final[key] != value:
                intermediate[(key, value)] = t
    read_values = {(k, v) for t in txns for k, v in _external_reads(t)}
    listed = {(k, v) for k, vs in (version_order or {}).items() for v in vs}

    def counts(t: Txn) -> bool:
        if t.status == "committed":
            return True
        if t.status == "aborted":
            return False
        return any((k, v) in read_values or (k, v) in listed for k, v in _final_writes(t).items())

    committed = [t for t in txns if counts(t)]
    for t in committed:
        for key, value in _external_reads(t):
            if value is None:
                continue
            w = writer.get((key, value))
            if w is None:
                anomalies.append(f"{t.id} read {key}={value!r}, which nobody wrote")
            elif w.status == "aborted":
                anomalies.append(f"G1a aborted read: {t.id} read {key}={value!r} of aborted {w.id}")
            elif (key, value) in intermediate and w is not t:
                anomalies.append(f"G1b intermediate read: {t.id} read {key}={value!r}, "
                                 f"overwritten within {w.id}")
    graph, n_edges = _dsg(committed, writer, version_order)
    cycle = _find_cycle(graph)
    if cycle is not None:
        anomalies.append("G2/G1c dependency cycle: " + " -> ".join(map(str, cycle)))
    return SerializabilityResult(not anomalies, anomalies, cycle, n_edges)


def _dsg(committed: list[Txn], writer: Mapping[tuple[Hashable, Any], Txn],
         version_order: Mapping[Any, Sequence[Any]] | None
         ) -> tuple[dict[Hashable, set[Hashable]], int]:
    ids = {id(t): t.id for t in committed}
    # next version after each (key, value); None is the initial version
    nxt: dict[tuple[Hashable, Any], Any] = {}
    if version_order is not None:
        for key, values in version_order.items():
            chain = [None, *values]
            for a, b in itertools.pairwise(chain):
                nxt[(key, a)] = b
    else:
        for t in committed:
            seen: dict[Hashable, Any] = {}
            for kind, key, value in t.ops:
                if kind == "r" and key not in seen:
                    seen[key] = value
                elif kind == "w" and key in seen and (key, seen[key]) not in nxt:
                    nxt[(key, seen[key])] = _final_writes(t)[key]
    graph: dict[Hashable, set[Hashable]] = {t.id: set() for t in committed}
    n = 0

    def edge(a: Txn | None, b: Txn | None) -> None:
        nonlocal n
        if a is None or b is None or a is b or id(a) not in ids or id(b) not in ids:
            return
        if b.id not in graph[a.id]:
            graph[a.id].add(b.id)
            n += 1

    for t in committed:
        for key, value in _external_reads(t):
            edge(writer.get((key, value)) if value is not None else None, t)      # wr
            later = nxt.get((key, value))
            if later is not None:
                edge(t, writer.get((key, later)))                                # rw
        for key, value in _final_writes(t).items():
            later = nxt.get((key, value))
            if later is not None:
                edge(t, writer.get((key, later)))                                # ww
    return graph, n


def _find_cycle(graph: Mapping[Hashable, set[Hashable]]) -> list[Hashable] | None:
    state: dict[Hashable, int] = {}
    order = sorted(graph, key=repr)
    for root in order:
        if state.get(root):
            continue
        path = [root]
        iters = [iter(sorted(graph[root], key=repr))]
        state[root] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            mark = state.get(nxt, 0)
            if mark == 1:
                return path[path.index(nxt):]
            if mark == 0:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph.get(nxt, ()), key=repr)))
    return None
