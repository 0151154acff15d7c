"""Seeded fault simulations of the Paxos KV service, with the safety invariants checked
after every simulated step (``MultiPaxosChecker`` on ``sim.after_event``): at most one
value chosen per slot, a chosen value never changes, acceptors never go back on a
promise, learners learn only chosen values. Histories must be linearizable.

The CI sweep runs 200 seeds of a small cluster under partitions, crashes and restarts,
loss, duplication and reordering (and the other nemesis kinds); ``GIANTS_SEEDS`` /
``nox -s sim`` scale it.
"""

from __future__ import annotations

from typing import Any

import pytest

from giants.core.sim import SimNetworkOptions
from giants.core.testing.consensus_conformance import SimCluster, run_kv_workload
from giants.core.testing.kv_workload import WorkloadMix
from giants.core.testing.nemesis import ALL_KINDS
from giants.paxos import paxos_factory
from giants.paxos.invariants import MultiPaxosChecker

FAULTS = ("partition", "crash", "loss", "duplicate", "reorder")


def _checked(seed: int, **kw: Any) -> tuple[Any, MultiPaxosChecker]:
    holder: list[MultiPaxosChecker] = []
    alpha = kw.pop("alpha", 64)

    def install(cluster: SimCluster) -> None:
        holder.append(MultiPaxosChecker(cluster.sim, cluster.nodes, alpha=alpha).attach())

    options = {"audit": True, **kw.pop("options", {})}
    res = run_kv_workload(paxos_factory, seed, options=options, on_cluster=install, **kw)
    return res, holder[0]


@pytest.mark.sim
def test_paxos_invariants_hold_under_faults(giants_seeds: Any) -> None:
    """200 seeds: 3 nodes, 3 clients, one fault at a time from FAULTS for 2.5 s."""
    for seed in giants_seeds(200):
        res, checker = _checked(seed, nodes=3, clients=3, ops_per_client=12, nemesis=FAULTS,
                                fault_window_s=2.5, snapshot_every=15)
        assert checker.steps > 0 and checker.chosen, f"seed {seed}: nothing was chosen"
        assert res.check.ok


@pytest.mark.sim
def test_paxos_invariants_hold_with_five_nodes_and_every_nemesis(giants_seeds: Any) -> None:
    for seed in giants_seeds(15, start=1000):
        _checked(seed, nodes=5, clients=4, ops_per_client=25, nemesis=ALL_KINDS,
                 fault_window_s=4.0, snapshot_every=20)


@pytest.mark.sim
def test_paxos_invariants_hold_on_a_lossy_duplicating_network(giants_seeds: Any) -> None:
    net = SimNetworkOptions(loss=0.1, duplicate=0.1, reorder=0.1)
    for seed in giants_seeds(15, start=2000):
        _checked(seed, nodes=3, clients=3, ops_per_client=15, nemesis=("crash", "partition"),
                 fault_window_s=3.0, network=net, snapshot_every=10,
                 mix=WorkloadMix(get=2, put=3, cas=2))


@pytest.mark.sim
def test_paxos_small_window_pipelining_and_leases(giants_seeds: Any) -> None:
    """alpha=2 (a tiny pipeline window) and leases on (no clock skew in this nemesis)."""
    for seed in giants_seeds(10, start=3000):
        _checked(seed, nodes=3, clients=4, ops_per_client=15, alpha=2,
                 options={"alpha": 2, "lease_s": 0.1},
                 nemesis=("partition", "crash", "loss", "isolate"), fault_window_s=3.0)
