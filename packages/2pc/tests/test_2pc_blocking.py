"""2PC's blocking window, its resolution, and the replicated coordinator without it.

Gray 1978 §5.8.3.3 / SYSTEMS.md §18: a participant that voted YES must wait for the
outcome; if the coordinator dies after deciding and before telling anyone, every
participant is in doubt and blocks until it returns. Cooperative termination helps only
when some peer knows the outcome. With the decision log on consensus (Gray & Lamport
2006) a coordinator crash no longer blocks.
"""

from __future__ import annotations

from giants.twopc._participant import ParticipantOptions
from giants.twopc._simcluster import CrashPlan, SimTxnCluster, build_sim, check_run
from giants.twopc._workload import WorkloadSpec

# "a" lives on shard-0 and "y" on shard-1 (crc32 placement over 3 shards)
SPEC = WorkloadSpec(keys=["a", "y"], txns=1, fixed_plan=[("w", "a"), ("w", "y")])
TXN = "client-0-1.0"


def scenario(plan: CrashPlan, **kw: object) -> SimTxnCluster:
    return build_sim(1, clients=1, spec=SPEC, plan=plan, **kw)  # type: ignore[arg-type]


def test_coordinator_crash_after_commit_record_blocks_until_it_returns() -> None:
    cluster = scenario(CrashPlan("coord-0", "decided", variant="after_persist", down_s=None))
    sim = cluster.sim
    sim.run_for(10.0)
    # both participants voted YES and nobody was told: in doubt, and they say so
    assert cluster.in_doubt() == {"shard-0": [TXN], "shard-1": [TXN]}
    for shard in ("shard-0", "shard-1"):
        p = cluster.participant(shard)
        assert p is not None and p.blocked() == [TXN]
        status = p.status(sim.now)
        assert status.txns[TXN]["blocked"] is True and status.txns[TXN]["state"] == "prepared"
        assert status.txns[TXN]["in_doubt_s"] > 5.0     # timeouts never abort after YES
    assert sim.stats.probes["2pc.participant_blocked"] == 2
    assert sim.stats.probes["2pc.cooperative_termination_resolved"] == 0   # peers in doubt too
    sim.restart("coord-0")
    sim.run_for(3.0)
    assert cluster.in_doubt() == {}
    assert sim.stats.probes["2pc.blocked_resolved"] == 2
    verdict = check_run(cluster)
    assert verdict.ok and verdict.committed == 1, verdict   # the logged COMMIT stands


def test_coordinator_crash_before_deciding_resolves_by_presumed_abort_or_a_new_round() -> None:
    cluster = scenario(CrashPlan("coord-0", "deciding", variant="before", down_s=None))
    cluster.sim.run_for(5.0)
    assert set(cluster.in_doubt()) == {"shard-0", "shard-1"}
    cluster.sim.restart("coord-0")
    cluster.sim.run_for(5.0)
    assert cluster.in_doubt() == {}
    verdict = check_run(cluster)
    assert verdict.ok, verdict


def test_cooperative_termination_resolves_when_a_peer_knows() -> None:
    # the coordinator logs COMMIT, tells shard-0 only, and dies for good
    plan = CrashPlan("coord-0", "decided", variant="after_send", down_s=None, only_to="shard-0")
    cluster = scenario(plan)
    sim = cluster.sim
    sim.run_for(5.0)
    assert plan.fired_at is not None
    assert cluster.in_doubt() == {}                     # resolved with the coordinator down
    assert sim.stats.probes["2pc.participant_blocked"] == 1
    assert sim.stats.probes["2pc.cooperative_termination_resolved"] == 1
    assert not sim.is_up("coord-0")
    outcomes = {s: sim.durable(s).get("2pc.done", TXN) for s in ("shard-0", "shard-1")}
    assert outcomes["shard-0"][0] is True and outcomes["shard-1"][0] is True


def test_a_peer_that_never_voted_aborts_for_a_blocked_one() -> None:
    # shard-1's Prepare is lost with the coordinator: shard-0 is prepared and blocks,
    # asks shard-1, which has not voted, so aborts and says so: shard-0 aborts too
    plan = CrashPlan("coord-0", "prepare_sent", variant="after_send", down_s=None,
                     only_to="shard-0")
    cluster = scenario(plan, participant=ParticipantOptions(active_timeout_s=60.0))
    sim = cluster.sim
    sim.run_for(5.0)
    assert cluster.in_doubt() == {}
    assert sim.stats.probes["2pc.peer_forced_abort"] == 1
    assert sim.durable("shard-0").get("2pc.done", TXN)[0] is False


def test_replicated_coordinator_leader_crash_does_not_block(each_fault_tolerant_consensus
                                                            ) -> None:
    name, factory = each_fault_tolerant_consensus
    # the same window as the first test: the leader dies right after its COMMIT is chosen
    plan = CrashPlan("coord-*", "decided", variant="after_persist", down_s=None)
    cluster = scenario(plan, consensus=factory)
    sim = cluster.sim
    sim.run_for(5.0)
    assert plan.fired_at is not None and not sim.is_up(plan.crashed or "")
    assert cluster.in_doubt() == {}, f"{name}: in doubt with one replica down"
    assert sim.stats.probes["2pc.participant_blocked"] == 0
    assert [r.status for r in cluster.records] == ["committed"]
    verdict = check_run(cluster)
    assert verdict.ok, verdict


def test_idle_transaction_is_aborted_before_prepare_and_its_locks_freed() -> None:
    cluster = build_sim(2, clients=1, spec=WorkloadSpec(keys=["a", "y"], txns=1,
                        fixed_plan=[("w", "a"), ("w", "y")], think_s=(0.0, 0.0)),
                        participant=ParticipantOptions(active_timeout_s=1.0))
    sim = cluster.sim
    p0 = cluster.participant("shard-0")
    assert p0 is not None
    sim.run_for(5.0, stop=lambda: bool(p0.locks.held(TXN)))
    sim.crash("client-0")                           # the client dies mid-transaction
    assert p0.locks.held(TXN)
    sim.run_for(2.0)
    assert p0.locks.held(TXN) == {} and p0.locks.resources() == []
    assert sim.stats.probes["2pc.participant_idle_abort"] >= 1
