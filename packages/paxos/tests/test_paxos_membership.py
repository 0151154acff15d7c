"""Membership change through the log with an alpha window ("Paxos Made Simple" §3):
a fourth node joins as a learner, catches up (snapshot + log), is promoted to voter,
and an original voter is removed, all while clients write; every step is checked by
the invariant checker with the configuration it derives from chosen values."""

from __future__ import annotations

from typing import Any

import pytest

from giants.core.consensus import ConsensusConfig
from giants.core.errors import Rejected
from giants.core.kv import KVStateMachine
from giants.core.process import Durable
from giants.core.rsm import ReplicatedService
from giants.core.sim import Simulation
from giants.core.testing.consensus_conformance import build_cluster
from giants.core.testing.history import History
from giants.core.testing.kv_workload import KVWorkloadClient
from giants.core.testing.linearizability import check_kv_linearizable
from giants.paxos import paxos_factory
from giants.paxos.invariants import MultiPaxosChecker

ALPHA = 8


def _change(sim: Simulation, cluster: Any, op: str, node: str, deadline_s: float = 10.0) -> None:
    """Ask the current leader for ``op`` until it is accepted (one change at a time)."""
    done: list[bool] = []
    end = sim.now + deadline_s

    def attempt(proc: Any, io: Any) -> None:
        try:
            proc.consensus.change_membership(io, op, node, node)
            done.append(True)
        except Rejected:
            pass

    while not done and sim.now < end:
        leader = cluster.leader()
        if leader is not None:
            sim.invoke(leader, attempt)
        sim.run_for(0.05)
    assert done, f"seed {sim.seed}: {op} {node} never accepted"


@pytest.mark.sim
def test_join_promote_remove_while_writing(giants_seeds: Any) -> None:
    for seed in giants_seeds(8):
        _join_promote_remove(seed)


def _join_promote_remove(seed: int) -> None:
    sim = Simulation(seed)
    options = {"audit": True, "alpha": ALPHA}
    cluster = build_cluster(sim, paxos_factory, 3, options=options, snapshot_every=20)
    peers = {n: n for n in cluster.nodes}

    def build(durable: Durable) -> ReplicatedService:
        config = ConsensusConfig("n3", peers, join=True, options=options)
        return ReplicatedService(KVStateMachine(), paxos_factory, config, durable,
                                 snapshot_every=20)

    sim.add_process("n3", build)
    MultiPaxosChecker(sim, [*cluster.nodes, "n3"], alpha=ALPHA,
                      voters=cluster.nodes).attach()
    history = History()
    clients = [KVWorkloadClient(f"c{i}", ["n0", "n1", "n2", "n3"], history, ops=60,
                                think_s=0.02) for i in range(2)]
    for c in clients:
        sim.add_process(c.client_id, lambda _d, c=c: c, tick_s=0.005)
    sim.run_for(1.0)
    _change(sim, cluster, "add_learner", "n3")
    sim.run_for(0.5)
    _change(sim, cluster, "promote", "n3")
    leader = cluster.leader()
    victim = next(n for n in ("n0", "n1", "n2") if n != leader)
    _change(sim, cluster, "remove", victim)
    cluster.nodes.append("n3")
    sim.run_until(sim.now + 30.0, stop=lambda: all(c.done for c in clients))
    assert all(c.done for c in clients), f"seed {seed}: clients stuck"
    sim.crash(victim)  # a removed node is not needed for progress any more
    sim.run_for(1.0)
    leader = cluster.leader()
    assert leader is not None and leader != victim
    members = sim.process(leader).consensus.members()  # type: ignore[union-attr]
    assert set(members.voters) == {"n0", "n1", "n2", "n3"} - {victim}, f"seed {seed}"
    want = sim.process(leader).sm.data  # type: ignore[union-attr]
    sim.run_for(2.0, stop=lambda: sim.process("n3").sm.data == want)  # type: ignore[union-attr]
    assert sim.process("n3").sm.data == want, f"seed {seed}: n3 did not catch up"  # type: ignore[union-attr]
    result = check_kv_linearizable(history)
    assert result.ok, f"seed {seed}:\n{result.explain()}"
