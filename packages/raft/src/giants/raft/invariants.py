"""Raft's safety properties (paper Fig. 3) as invariants checked after every simulator step.

``RaftInvariants(sim, nodes).install()`` appends a hook to ``sim.after_event``; a broken
property raises ``AssertionError`` naming it, the seed and the simulated time.

* **Election Safety** -- at most one leader per term (every leader ever seen is kept).
* **Log Matching** -- an entry ``(index, term)`` fixes its data and the term of the entry
  before it: a global table is filled from every node's log and every entry must agree
  with it. By induction, two logs that hold the same ``(index, term)`` are identical up
  to it. Only entries changed since the last step are checked (``RaftLog.changed_from``).
* **Leader Completeness** -- a node that becomes leader of a term holds every entry
  committed so far (those after its snapshot).
* **State Machine Safety** -- every node commits (and hands to its state machine) the
  same entry at each index: committed entries are recorded globally and compared.

The checker reads core state only; it never changes it (apart from resetting the log's
change marker, which the core does not read).
"""

from __future__ import annotations

from typing import Any

from giants.core.sim import Simulation
from giants.raft._core import LEADER, RaftCore

__all__ = ["RaftInvariants", "core_of"]


def core_of(sim: Simulation, node: str) -> RaftCore | None:
    """The live Raft core of ``node`` (inside its ReplicatedService), or None."""
    proc: Any = sim.process(node)
    if proc is None:
        return None
    core = getattr(proc, "consensus", proc)
    return core if isinstance(core, RaftCore) else None


class RaftInvariants:
    def __init__(self, sim: Simulation, nodes: list[str]) -> None:
        self.sim = sim
        self.nodes = list(nodes)
        self.leaders: dict[int, str] = {}
        self.entries: dict[tuple[int, int], tuple[Any, int | None]] = {}
        self.committed: dict[int, tuple[int, Any]] = {}
        # node -> (core object, index / term); holding the object keeps identity checks sound
        self._checked_commit: dict[str, tuple[RaftCore, int]] = {}
        self._led: dict[str, tuple[RaftCore, int]] = {}
        self.steps = 0
        self._cache: dict[str, tuple[object, RaftCore]] = {}

    def install(self) -> RaftInvariants:
        self.sim.after_event.append(self.check)
        return self

    def add_node(self, node: str) -> None:
        self.nodes.append(node)

    def _fail(self, what: str, detail: str) -> None:
        raise AssertionError(f"seed {self.sim.seed} t={self.sim.now:.3f}s: {what} violated: {detail}")

    def check(self, sim: Simulation) -> None:
        self.steps += 1
        cache = self._cache
        for node in self.nodes:
            proc = sim.process(node)
            if proc is None:
                continue
            hit = cache.get(node)
            if hit is None or hit[0] is not proc:
                core = core_of(sim, node)
                if core is None:
                    continue
                hit = cache[node] = (proc, core)
            core = hit[1]
            if core.role == LEADER:
                self._election_safety(node, core)
            if core.log.changed_from is not None:
                self._log_matching(node, core)
            mark = self._checked_commit.get(node)
            if mark is None or mark[0] is not core or mark[1] != core.commit:
                self._state_machine_safety(node, core, mark)

    def _election_safety(self, node: str, core: RaftCore) -> None:
        other = self.leaders.setdefault(core.term, node)
        if other != node:
            self._fail("Election Safety", f"{other} and {node} both lead term {core.term}")
        led = self._led.get(node)
        if led is None or led[0] is not core or led[1] != core.term:
            self._led[node] = (core, core.term)
            self._leader_completeness(node, core)

    def _log_matching(self, node: str, core: RaftCore) -> None:
        log = core.log
        start = max(log.changed_from or 0, log.base_index + 1)
        log.changed_from = None
        table = self.entries
        prev_term = log.term_at(start - 1)
        for i in range(start, log.last_index + 1):
            term, data = log.entry(i)
            seen = table.setdefault((i, term), (data, prev_term))
            if seen[0] != data or seen[1] != prev_term:
                self._fail("Log Matching",
                           f"{node} holds ({i}, term {term}) = {data!r:.40} after term {prev_term}; "
                           f"another log has {seen[0]!r:.40} after term {seen[1]}")
            prev_term = term

    def _leader_completeness(self, node: str, core: RaftCore) -> None:
        log = core.log
        for index, (term, _) in self.committed.items():
            if index > log.base_index and log.term_at(index) != term:
                self._fail("Leader Completeness",
                           f"{node} leads term {core.term} without committed entry {index} "
                           f"(term {term}); it has term {log.term_at(index)}")

    def _state_machine_safety(self, node: str, core: RaftCore,
                              mark: tuple[RaftCore, int] | None) -> None:
        log = core.log
        lo = mark[1] + 1 if mark is not None and mark[0] is core else log.base_index + 1
        lo = max(lo, log.base_index + 1)
        for i in range(lo, core.commit + 1):
            term, data = log.entry(i)
            seen = self.committed.setdefault(i, (term, data))
            if seen != (term, data):
                self._fail("State Machine Safety",
                           f"{node} committed ({i}, term {term}) but ({i}, term {seen[0]}) "
                           f"was committed elsewhere")
        self._checked_commit[node] = (core, core.commit)
