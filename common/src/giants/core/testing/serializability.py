"""A serializability checker for read/write-register transactions: Adya's DSG.

Adya, Liskov, O'Neil, "Generalized Isolation Level Definitions" (ICDE 2000) §3-4: a
history is (conflict-)serializable when its direct serialization graph (DSG) over the
committed transactions has no cycle. Edges, for transactions Ti != Tj and a key x:

* ``ww`` -- Ti installed a version of x and Tj installed the next one;
* ``wr`` -- Tj read the version of x that Ti installed;
* ``rw`` -- Ti read a version of x and Tj installed the next one (an anti-dependency).

A cycle is classified as Adya does (§4): **G0** (write cycle: ``ww`` edges only),
**G1c** (circular information flow: ``ww`` and ``wr`` edges), **G-single** (exactly
one ``rw`` edge: read skew, lost update) or **G2** (several ``rw`` edges: write skew).
The checker looks for the strongest class first, so a G0 cycle is reported as G0 even
when a G2 cycle also exists; the cycle is printed with its edges.

Every written value must be unique per key (so a read names its writer), and ``None``
stands for "absent", the initial version. The *version order* of each key -- which
committed write followed which -- comes from the store (``version_order``: key -> the
values in installation order, e.g. a shard's commit order). Without it only the order
implied by the history is used (the initial version first, so a reader of it precedes
every writer; a transaction that read version v and then wrote v' puts v' after v, so
every reader of v precedes it), which finds fewer cycles.

Also reported (Adya's phenomena that need no graph): **G1a** aborted read (a value only
an aborted transaction wrote was read by a committed one), **G1b** intermediate read (a
value a transaction overwrote itself was read by another), a read of a value nobody
wrote (garbage), and **internal inconsistency** (a transaction did not read its own
latest write). ``unknown`` transactions (the client never learned the outcome) count as
committed when one of their writes was read by a transaction that is not aborted or
appears in ``version_order``, else they are left out (as if aborted: nothing saw them).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from giants.core.graph import find_cycle

__all__ = ["CycleEdge", "SerializabilityResult", "Txn", "check_serializable"]

Op = tuple[str, Hashable, Any]   # ("r" | "w", key, value)
# Edge types allowed when searching for each class of cycle, strongest class first.
_CYCLE_CLASSES = (("G0", frozenset({"ww"})), ("G1c", frozenset({"ww", "wr"})),
                  ("G2", frozenset({"ww", "wr", "rw"})))


@dataclass(frozen=True)
class Txn:
    """One transaction of a history: its operations in program order and its status
    (``committed``, ``aborted`` or ``unknown``)."""

    id: Hashable
    ops: tuple[Op, ...]
    status: str = "committed"


@dataclass(frozen=True)
class CycleEdge:
    """One dependency ``source -type(key)-> target`` of a reported cycle."""

    source: Hashable
    type: str
    key: Hashable
    target: Hashable

    def __str__(self) -> str:
        return f"{self.source} -{self.type}({self.key})-> {self.target}"


@dataclass
class SerializabilityResult:
    """The verdict: ``anomalies`` lists every problem found (empty iff ``ok``)."""

    ok: bool
    anomalies: list[str] = field(default_factory=list)
    cycle: list[Hashable] | None = None
    edges: int = 0
    kind: str | None = None                      # G0 / G1c / G-single / G2
    cycle_edges: list[CycleEdge] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok

    def explain(self) -> str:
        if self.ok:
            return f"serializable ({self.edges} dependency edges, no cycle)"
        return "not serializable:\n" + "\n".join(f"  {a}" for a in self.anomalies)


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
    intermediate: set[tuple[Hashable, Any]] = set()
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
                intermediate.add((key, value))
    committed = _counted(txns, version_order)
    anomalies += _read_anomalies(committed, writer, intermediate)
    graph = _dsg(committed, writer, version_order)
    n_edges = sum(len(targets) for targets in graph.values())
    for kind, allowed in _CYCLE_CLASSES:
        cycle = _find_cycle(graph, allowed)
        if cycle is None:
            continue
        edges = _label_cycle(graph, cycle, allowed)
        if kind == "G2" and sum(e.type == "rw" for e in edges) == 1:
            kind = "G-single"
        anomalies.append(f"{kind} dependency cycle: " + ", ".join(map(str, edges)))
        return SerializabilityResult(False, anomalies, cycle, n_edges, kind, edges)
    return SerializabilityResult(not anomalies, anomalies, None, n_edges)


def _counted(txns: list[Txn], version_order: Mapping[Any, Sequence[Any]] | None) -> list[Txn]:
    """The transactions that took effect: committed ones and observed unknown ones."""
    read_values = {(k, v) for t in txns if t.status != "aborted" for k, v in _external_reads(t)}
    listed = {(k, v) for k, vs in (version_order or {}).items() for v in vs}

    def counts(t: Txn) -> bool:
        if t.status == "committed":
            return True
        if t.status == "aborted":
            return False
        return any((k, v) in read_values or (k, v) in listed for k, v in _final_writes(t).items())

    return [t for t in txns if counts(t)]


def _read_anomalies(committed: list[Txn], writer: Mapping[tuple[Hashable, Any], Txn],
                    intermediate: set[tuple[Hashable, Any]]) -> list[str]:
    out = []
    for t in committed:
        for key, value in _external_reads(t):
            if value is None:
                continue
            w = writer.get((key, value))
            if w is None:
                out.append(f"garbage read: {t.id} read {key}={value!r}, which nobody wrote")
            elif w.status == "aborted":
                out.append(f"G1a aborted read: {t.id} read {key}={value!r} of aborted {w.id}")
            elif (key, value) in intermediate and w is not t:
                out.append(f"G1b intermediate read: {t.id} read {key}={value!r}, "
                           f"overwritten within {w.id}")
    return out


Graph = dict[Hashable, dict[Hashable, set[tuple[str, Hashable]]]]   # a -> b -> {(type, key)}


def _later_versions(committed: list[Txn], version_order: Mapping[Any, Sequence[Any]] | None
                    ) -> dict[tuple[Hashable, Any], list[Any]]:
    """(key, version) -> versions known to be installed after it (``None``: initial).

    With a version order, that is the next version. Without one, it is every version
    written by a transaction that read ``version`` and then wrote the key: whichever
    came first, each of them is later (two of them is already a lost update).
    """
    later: dict[tuple[Hashable, Any], list[Any]] = {}
    if version_order is not None:
        for key, values in version_order.items():
            for a, b in itertools.pairwise([None, *values]):
                later[(key, a)] = [b]
        return later
    for t in committed:
        final = _final_writes(t)
        for key, value in _external_reads(t):
            if key in final:
                later.setdefault((key, value), []).append(final[key])
    return later


def _dsg(committed: list[Txn], writer: Mapping[tuple[Hashable, Any], Txn],
         version_order: Mapping[Any, Sequence[Any]] | None) -> Graph:
    members = {id(t) for t in committed}
    later = _later_versions(committed, version_order)
    graph: Graph = {t.id: {} for t in committed}

    def edge(a: Txn | None, b: Txn | None, type_: str, key: Hashable) -> None:
        if a is None or b is None or a is b or id(a) not in members or id(b) not in members:
            return
        graph[a.id].setdefault(b.id, set()).add((type_, key))

    writers_of: dict[Hashable, list[Txn]] = {}
    if version_order is None:
        for t in committed:
            for key in _final_writes(t):
                writers_of.setdefault(key, []).append(t)
    for t in committed:
        for key, value in _external_reads(t):
            if value is not None:
                edge(writer.get((key, value)), t, "wr", key)
            elif version_order is None:
                # The initial version precedes every written one, whatever their order.
                for w in writers_of.get(key, ()):
                    edge(t, w, "rw", key)
                continue
            for version in later.get((key, value), ()):
                edge(t, writer.get((key, version)), "rw", key)
        for key, value in _final_writes(t).items():
            for version in later.get((key, value), ()):
                edge(t, writer.get((key, version)), "ww", key)
    return graph


def _find_cycle(graph: Graph, allowed: frozenset[str]) -> list[Hashable] | None:
    """A cycle using only edges with a type in ``allowed`` (iterative DFS), or None."""
    def successors(node: Hashable) -> list[Hashable]:
        out = graph.get(node, {})
        return sorted((b for b, labels in out.items() if any(t in allowed for t, _ in labels)),
                      key=repr)

    return find_cycle(sorted(graph, key=repr), successors)


def _label_cycle(graph: Graph, cycle: list[Hashable], allowed: frozenset[str]
                 ) -> list[CycleEdge]:
    """The cycle's edges, preferring the strongest dependency (ww, then wr, then rw)."""
    rank = {"ww": 0, "wr": 1, "rw": 2}
    out = []
    for a, b in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
        labels = sorted((lab for lab in graph[a][b] if lab[0] in allowed),
                        key=lambda lab: (rank[lab[0]], repr(lab[1])))
        type_, key = labels[0]
        out.append(CycleEdge(a, type_, key, b))
    return out
