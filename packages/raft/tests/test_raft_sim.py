"""Seeded simulations of Raft clusters with the core's checkers and Raft's invariants.

* 200 seeds (CI; ``GIANTS_SEEDS`` / ``--seeds`` for more) of a 5-node cluster under every
  nemesis kind: each history linearizable, Election Safety / Log Matching / Leader
  Completeness / State Machine Safety checked after every simulator step, and every
  client finishes after the faults heal (progress).
* The same with leader-lease reads on, and with tiny batches and trailing logs so
  InstallSnapshot and back-off run all the time.
* Membership under load: 3 -> 5 (learners first) -> 3, removing the leader; no
  acknowledged write is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from giants.core.consensus import ConsensusConfig
from giants.core.kv import KVStateMachine
from giants.core.process import Durable
from giants.core.rsm import (
    ClientQuery,
    MembershipChange,
    MembershipResult,
    QueryResult,
    ReplicatedService,
)
from giants.core.sim import Simulation
from giants.core.testing.consensus_conformance import SimCluster, run_kv_workload
from giants.core.testing.consensus_conformance import _Probe as _Admin  # a scripted client
from giants.core.testing.history import History
from giants.core.testing.kv_workload import KVWorkloadClient, WorkloadMix
from giants.core.testing.linearizability import check_kv_linearizable
from giants.raft import raft_factory
from giants.raft._core import LEADER, RaftCore
from giants.raft.invariants import RaftInvariants, core_of


def _checked(cluster: SimCluster) -> None:
    RaftInvariants(cluster.sim, cluster.nodes).install()


@pytest.mark.sim
def test_five_nodes_every_nemesis_linearizable_with_invariants(giants_seeds: Any) -> None:
    """5 nodes, 4 clients x 20 ops over a 2.5 s fault window of every nemesis kind."""
    probes: dict[str, int] = {}
    seeds = list(giants_seeds(200))
    for seed in seeds:
        res = run_kv_workload(raft_factory, seed, nodes=5, clients=4, ops_per_client=20,
                              fault_window_s=2.5, snapshot_every=30, on_cluster=_checked)
        for name, count in res.sim.stats.probes.items():
            probes[name] = probes.get(name, 0) + count
    if len(seeds) >= 100:
        # the sweep reaches the rare branches it is meant to exercise
        for name in ("raft.election_timeout", "raft.append.back_off", "raft.append.truncate",
                     "raft.check_quorum.step_down", "raft.rejected.stale_term",
                     "raft.rejected.in_lease", "rsm.duplicate_suppressed"):
            assert probes.get(name), f"probe {name} never fired: {sorted(probes)}"


@pytest.mark.sim
def test_lease_reads_and_snapshot_heavy_runs(giants_seeds: Any) -> None:
    """Lease reads on; tiny batches, no trailing log, small chunks: InstallSnapshot,
    pipelining limits and back-off are exercised on every seed."""
    options = {"lease_reads": True, "max_batch_entries": 3, "max_inflight": 2,
               "snapshot_trailing_entries": 0, "snapshot_chunk_bytes": 64}
    fired: set[str] = set()
    seeds = list(giants_seeds(30))
    for seed in seeds:
        res = run_kv_workload(raft_factory, seed, nodes=5, clients=4, ops_per_client=25,
                              fault_window_s=3.0, snapshot_every=10, options=options,
                              on_cluster=_checked)
        fired |= set(res.sim.stats.probes)
    if len(seeds) >= 10:
        assert {"raft.read.lease", "raft.snapshot.send", "raft.snapshot.installed"} <= fired


# -- membership under load ---------------------------------------------------------------


def _leader(sim: Simulation, nodes: list[str]) -> str | None:
    for n in nodes:
        core = core_of(sim, n)
        if core is not None and core.role == LEADER and n in core.voters:
            return n
    return None


def _request(sim: Simulation, admin: _Admin, target: str, body: Any) -> Any:
    sent: list[int] = []
    sim.invoke("admin", lambda _p, io: sent.append(io.send(target, body)))
    sim.run_for(1.0, stop=lambda: any(r.in_reply_to == sent[0] for r in admin.replies))
    return next((r.body for r in admin.replies if r.in_reply_to == sent[0]), None)


def _change(sim: Simulation, admin: _Admin, nodes: list[str], op: str,
            pick: Callable[[str], str]) -> str:
    """Apply one membership change through the current leader; wait until it commits."""
    for _ in range(200):
        sim.run_for(0.05, stop=lambda: _leader(sim, nodes) is not None)
        leader = _leader(sim, nodes)
        if leader is None:
            continue
        node = pick(leader)
        reply = _request(sim, admin, leader, MembershipChange(op, node, node))
        if not isinstance(reply, MembershipResult):
            sim.run_for(0.1)
            continue
        core = core_of(sim, leader)
        assert isinstance(core, RaftCore)
        index, voters = core._pending_conf_index, list(reply.voters)

        def committed(index: int = index, voters: list[str] = voters) -> bool:
            return all((c := core_of(sim, n)) is None or c.commit >= index for n in voters)

        sim.run_for(5.0, stop=committed)
        return node
    raise AssertionError(f"seed {sim.seed}: {op} never went through")


def _membership_run(seed: int) -> None:
    sim = Simulation(seed)
    nodes = [f"n{i}" for i in range(5)]
    initial = {n: n for n in nodes[:3]}

    def make(node: str) -> Callable[[Durable], ReplicatedService]:
        def build(durable: Durable) -> ReplicatedService:
            config = ConsensusConfig(node, initial, join=node not in initial)
            return ReplicatedService(KVStateMachine(), raft_factory, config, durable,
                                     snapshot_every=40)
        return build

    for n in nodes:
        sim.add_process(n, make(n))
    invariants = RaftInvariants(sim, nodes).install()
    history = History()
    clients = [KVWorkloadClient(f"c{i}", nodes, history, ops=60, think_s=0.05,
                                mix=WorkloadMix(get=3, put=5, cas=2)) for i in range(3)]
    for c in clients:
        sim.add_process(c.client_id, lambda _d, c=c: c, tick_s=0.005)
    admin = _Admin()
    sim.add_process("admin", lambda _d: admin)
    sim.run_for(0.5)
    for new in ("n3", "n4"):
        _change(sim, admin, nodes, "add_learner", lambda _l, new=new: new)
        _change(sim, admin, nodes, "promote", lambda _l, new=new: new)
    leader = _leader(sim, nodes)
    assert leader is not None
    assert set(core_of(sim, leader).voters) == set(nodes)  # type: ignore[union-attr]
    removed = _change(sim, admin, nodes, "remove", lambda lead: lead)
    remaining = [n for n in nodes if n != removed]
    second = _change(sim, admin, remaining, "remove",
                     lambda lead: next(n for n in remaining if n != lead))
    voters = [n for n in remaining if n != second]
    sim.run_until(sim.now + 60.0, stop=lambda: all(c.done for c in clients))
    assert all(c.done for c in clients), f"seed {seed}: clients stuck after reconfiguration"
    leader = _leader(sim, voters)
    assert leader is not None and set(core_of(sim, leader).voters) == set(voters)  # type: ignore[union-attr]
    for key in WorkloadMix().keys:
        op = history.invoke("final", "get", None, key=key, time=sim.now)
        reply = _request(sim, admin, _leader(sim, voters) or leader, ClientQuery(["get", key]))
        assert isinstance(reply, QueryResult), f"seed {seed}: final read {reply!r}"
        history.ok(op, reply.result, time=sim.now)
    result = check_kv_linearizable(history)
    assert result.ok, f"seed {seed}: acknowledged writes lost over reconfiguration:\n{result.explain()}"
    assert invariants.steps > 0 and sim.stats.probes["raft.leader_removed"] >= 1


@pytest.mark.sim
def test_membership_three_to_five_to_three_removing_the_leader(giants_seeds: Any) -> None:
    for seed in giants_seeds(10):
        _membership_run(seed)


@pytest.mark.sim
def test_fig16_randomness_shortens_elections() -> None:
    """§9.3, Fig. 16: with no randomness split votes drag elections out; 50 ms of
    randomness makes them fast and bounds the worst case."""
    from giants.raft.elections import election_downtimes

    none = sorted(election_downtimes(0, 12, seed=1))
    some = sorted(election_downtimes(50, 12, seed=1))
    assert some[6] * 3 < none[6], (none, some)
    assert max(some) < 0.6, some
