"""A crash at every protocol step of every role, across many seeds (issue 5).

Each seed picks one (role, step, variant) combination -- cycling through all of them --
plus a random occurrence of the step, a random downtime and, for some seeds, a lossy,
duplicating network. After the workload, every node is restarted and the protocol left
to settle; then the run must be atomic (one outcome per transaction at all its shards,
matching what clients were told), lose no committed write (each shard's data is the
replay of its commits), and leave nobody in doubt.
"""

from __future__ import annotations

import itertools
import random

import pytest

from giants.core.sim import SimNetworkOptions
from giants.twopc._simcluster import VARIANTS, CrashPlan, build_sim, check_run

COORDINATOR_STEPS = ("prepare_sent", "vote", "deciding", "decided", "forgotten")
PARTICIPANT_STEPS = ("prepared", "committed", "aborted", "read_only", "txn_aborted")
REPLICA_STEPS = ("coordinator_leader", "prepare_sent", "vote", "deciding", "decided",
                 "forgotten")

PLAIN_COMBOS = ([("coord-0", s, v) for s, v in itertools.product(COORDINATOR_STEPS, VARIANTS)]
                + [("shard", s, v) for s, v in itertools.product(PARTICIPANT_STEPS, VARIANTS)])


def _plan(seed: int, combos: list[tuple[str, str, str]]) -> tuple[CrashPlan, SimNetworkOptions]:
    rng = random.Random(f"2pc-crash:{seed}")
    node, step, variant = combos[seed % len(combos)]
    if node == "shard":
        node = f"shard-{rng.randrange(3)}"
    down = rng.choice([0.1, 0.5, 1.5, 4.0])
    rare = step in ("aborted", "txn_aborted", "read_only", "coordinator_leader")
    occurrence = 1 if rare else rng.randint(1, 3)
    plan = CrashPlan(node, step, occurrence=occurrence, variant=variant, down_s=down)
    lossy = rng.random() < 0.3
    net = SimNetworkOptions(loss=0.03 if lossy else 0.0, duplicate=0.03 if lossy else 0.0,
                            reorder=0.05 if lossy else 0.0)
    return plan, net


def run_crash_seed(seed: int, combos: list[tuple[str, str, str]], **build_kw: object) -> CrashPlan:
    plan, net = _plan(seed, combos)
    cluster = build_sim(seed, plan=plan, network=net, buggify=True, keys=6, **build_kw)  # type: ignore[arg-type]
    cluster.run(80.0)
    verdict = check_run(cluster)
    assert verdict.ok, f"seed {seed} {plan}: {verdict}"
    assert verdict.committed > 0, f"seed {seed}: nothing committed ({verdict})"
    return plan


@pytest.mark.sim
def test_crash_at_every_step_plain_coordinator(giants_seeds) -> None:
    fired: set[tuple[str, str, str]] = set()
    seeds = list(giants_seeds(240))
    for seed in seeds:
        plan = run_crash_seed(seed, PLAIN_COMBOS)
        if plan.fired_at is not None:
            role = "shard" if plan.node.startswith("shard") else plan.node
            fired.add((role, plan.step, plan.variant))
    if len(seeds) >= 3 * len(PLAIN_COMBOS):
        # every crash point was really hit somewhere in the sweep
        assert fired == set(PLAIN_COMBOS), sorted(set(PLAIN_COMBOS) - fired)


REPLICA_COMBOS = ([("coord-*", s, v) for s, v in itertools.product(REPLICA_STEPS, VARIANTS)]
                  + [("shard", s, v) for s, v in itertools.product(PARTICIPANT_STEPS, VARIANTS)])


@pytest.mark.sim
def test_crash_at_every_step_replicated_coordinator_never_blocks(giants_seeds,
                                                                 fault_tolerant_consensus) -> None:
    """The same crash points with the decision log on a fault-tolerant consensus plugin:
    a crashed coordinator replica stays down for the rest of the run, and still every
    transaction is resolved at every shard and every client gets its answer."""
    name, factory = fault_tolerant_consensus
    for seed in giants_seeds(60):
        plan, net = _plan(seed, REPLICA_COMBOS)
        if plan.node.startswith("coord"):
            plan.down_s = None                      # the crashed replica never returns
        cluster = build_sim(seed, plan=plan, network=net, buggify=True, keys=6,
                            consensus=factory)
        cluster.run(80.0, restart=False)
        assert cluster.in_doubt() == {}, (
            f"{name} seed {seed} {plan}: blocked with a coordinator replica down: "
            f"{cluster.in_doubt()}")
        unknown = [r.txn for r in cluster.records if r.status == "unknown"]
        assert not unknown, f"{name} seed {seed} {plan}: clients left without answer {unknown}"
        cluster.run(0.0, restart=True)
        verdict = check_run(cluster)
        assert verdict.ok, f"{name} seed {seed} {plan}: {verdict}"
