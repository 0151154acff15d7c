"""Seeded simulations of a five-replica cell on each consensus plugin under a nemesis
(crash / isolate / partition of replicas, the master killed first; message loss,
duplication, reordering, clogging). Half the blocking acquires are impatient: the client
abandons them or gives them a short deadline, then asks again at once on the same handle
(docs/integration.md, finding 2). Each run checks (``giants.chubby.sim``): no session
expires through fail-overs, at most one exclusive holder at every step (against the
sequencers handed out), sequencers checked stale correctly, file operations
linearizable, no stale cached read, replicas agree, and at the end every call was
answered and the lock is free. CI runs 220 seeds per plugin (the issue asks for 200+);
``GIANTS_SEEDS=x10`` (or ``nox -s sim``) runs a longer sweep."""

from __future__ import annotations

import pytest

from giants.chubby.sim import check_run, run_chubby_sim
from giants.core.trace import TraceWriter

pytestmark = pytest.mark.sim


@pytest.mark.seeds(220)
def test_raft_cell_under_nemesis(seed: int) -> None:
    run = run_chubby_sim(seed, consensus="raft")
    assert check_run(run) == []
    assert len(run.world.history.operations()) > 50


@pytest.mark.seeds(220)
def test_paxos_cell_under_nemesis(seed: int) -> None:
    run = run_chubby_sim(seed, consensus="paxos")
    assert check_run(run) == []
    assert len(run.world.history.operations()) > 50


def test_runs_use_the_cache_and_the_lock() -> None:
    """The workload really exercises caching and locking (a check that cannot pass
    vacuously)."""
    run = run_chubby_sim(7, consensus="raft", nemesis=())
    assert check_run(run) == []
    assert sum(c.core.stats["cache_hits"] for c in run.clients) > 20
    assert len(run.world.generations) > 5
    impatient = run.world.impatient
    assert impatient["abandoned"] and impatient["timed_out"] and impatient["won"], impatient
    assert impatient["asked_again"] >= impatient["abandoned"]


def test_checker_catches_an_acquire_won_behind_the_callers_back() -> None:
    """Make the client library forget an abandoned call (the cell may still grant it):
    the end-of-run checks must find the lock held by a session that does not know."""
    from giants.chubby._session import ClientCore

    def forgetful(self: ClientCore, now: float, op_id: int) -> None:
        for o in [*self._writes, *self._reads]:
            if o.op_id == op_id:
                self._drop_op(o)
                self._requests.pop(o.token, None)

    original = ClientCore.abandon
    ClientCore.abandon = forgetful  # type: ignore[method-assign]
    try:
        problems = []
        for seed in range(8):
            problems += check_run(run_chubby_sim(seed, consensus="raft", nemesis=()))
    finally:
        ClientCore.abandon = original  # type: ignore[method-assign]
    assert any("lock is still held" in p for p in problems), problems


def test_same_seed_same_trace() -> None:
    a, b = TraceWriter(), TraceWriter()
    run_chubby_sim(3, consensus="paxos", trace=a, ops_s=2.0)
    run_chubby_sim(3, consensus="paxos", trace=b, ops_s=2.0)
    assert a.text() == b.text() and a.text()


def test_checker_catches_a_stale_cache() -> None:
    """Disable invalidation in the master: the checkers must report stale reads."""
    from giants.chubby import _master

    original = _master.ChubbyReplica._modify

    def no_invalidation(self: _master.ChubbyReplica, io: object, env: object,
                        command: list[object], paths: list[str], writer: int) -> None:
        self.cachers.clear()
        original(self, io, env, command, [], writer)  # type: ignore[arg-type]

    _master.ChubbyReplica._modify = no_invalidation  # type: ignore[method-assign]
    try:
        problems = []
        for seed in range(6):
            problems += check_run(run_chubby_sim(seed, consensus="raft", nemesis=()))
    finally:
        _master.ChubbyReplica._modify = original  # type: ignore[method-assign]
    assert any("stale" in p or "linearizable" in p for p in problems)


@pytest.mark.parametrize("consensus", ["raft", "paxos"])
def test_snapshots_and_restarts_keep_the_database(consensus: str) -> None:
    """Compaction every 40 entries: replicas that crash and restart rebuild from the
    consensus snapshot plus the log suffix, and every check still holds."""
    from dataclasses import replace

    from giants.chubby import ChubbyReplica
    from giants.chubby.sim import SIM_CELL

    for seed in range(3):
        run = run_chubby_sim(seed, consensus=consensus, cell=replace(SIM_CELL, snapshot_every=40))
        assert check_run(run) == []
        live = [run.sim.process(n) for n in run.replicas]
        assert all(isinstance(p, ChubbyReplica) and p.applier.snapshot_index > 0 for p in live)
