"""Strict 2PL at the shards makes the transactional KV serializable (issue 5).

Randomized concurrent multi-shard workloads, high contention (few keys, many clients),
under every deadlock policy; the clients' histories are checked with the core's
serializability checker (Adya's DSG, version order from each shard's commit order),
together with atomicity and durability (``check_run``). Then the same under the nemesis.
"""

from __future__ import annotations

import pytest

from giants.twopc._participant import ParticipantOptions
from giants.twopc._simcluster import build_sim, check_run
from giants.twopc._workload import WorkloadSpec
from giants.twopc.simrun import run_nemesis
from giants.twopl import DeadlockPolicy

POLICIES = [p.value for p in DeadlockPolicy]


@pytest.mark.sim
@pytest.mark.parametrize("policy", POLICIES)
def test_concurrent_transactions_are_serializable(policy: str, giants_seeds) -> None:
    committed = aborted = 0
    for seed in giants_seeds(12):
        spec = WorkloadSpec(keys=[f"k{i}" for i in range(5)], txns=6, ops=(2, 5),
                            read_fraction=0.5, think_s=(0.0, 0.01))
        cluster = build_sim(seed, clients=5, spec=spec,
                            participant=ParticipantOptions(deadlock=policy,
                                                           lock_wait_timeout_s=0.3))
        cluster.run(60.0)
        verdict = check_run(cluster)
        assert verdict.ok, f"{policy} seed {seed}: {verdict}"
        committed += verdict.committed
        aborted += verdict.aborted
    # the workload really contends: some transactions were aborted by the policy
    assert committed > 0 and aborted > 0, (committed, aborted)


@pytest.mark.sim
def test_nemesis_runs_are_atomic_durable_and_serializable(giants_seeds) -> None:
    for seed in giants_seeds(15):
        _, verdict = run_nemesis(seed, txns=8)
        assert verdict.ok, f"seed {seed}: {verdict}"
        assert verdict.committed > 0


@pytest.mark.sim
def test_nemesis_runs_with_replicated_coordinator(giants_seeds,
                                                 each_fault_tolerant_consensus) -> None:
    _, factory = each_fault_tolerant_consensus
    for seed in giants_seeds(6):
        _, verdict = run_nemesis(seed, txns=6, consensus=factory)
        assert verdict.ok, f"seed {seed}: {verdict}"


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_makes_progress_when_transactions_deadlock(policy: str, giants_seeds) -> None:
    """Half the clients write a (shard-0) then y (shard-1), half y then a: a distributed
    deadlock waiting to happen, again and again. Every transaction of every client must
    eventually commit (aborted attempts retry with their original timestamp). Under
    ``detect`` the cycles span shards, so it is the coordinator's global detector (fed
    the shards' waits-for graphs) that must break them."""
    txns = 4
    forward = WorkloadSpec(keys=["a", "y"], txns=txns, fixed_plan=[("w", "a"), ("w", "y")],
                           think_s=(0.0, 0.002), max_attempts=200)
    backward = WorkloadSpec(keys=["a", "y"], txns=txns, fixed_plan=[("w", "y"), ("w", "a")],
                            think_s=(0.0, 0.002), max_attempts=200)
    aborted = global_cycles = 0
    for seed in giants_seeds(6):
        cluster = build_sim(seed, clients=4, specs=[forward, backward],
                            participant=ParticipantOptions(deadlock=policy))
        cluster.run(120.0)
        verdict = check_run(cluster)
        assert verdict.ok, f"{policy} seed {seed}: {verdict}"
        assert verdict.committed == 4 * txns, f"{policy} seed {seed}: no progress: {verdict}"
        aborted += verdict.aborted
        global_cycles += cluster.sim.stats.probes["2pc.global_deadlock"]
    assert aborted > 0      # it did deadlock (or was prevented from it) along the way
    if policy == "detect":
        # the cycles span shards: the coordinator's global detector broke them
        assert global_cycles > 0
