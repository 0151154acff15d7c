"""Simulated scenarios: ``giants sim paxos [--scenario duel|basic|failover]``.

* ``duel`` ("Paxos Made Simple" §2.4): two proposers, three acceptors, the same
  network delay (10 ms +- 0.5 ms). In ``naive`` mode each proposer starts a higher
  ballot every 30 ms until it sees a value chosen: each Prepare lands between the other
  proposer's Prepare and its Accept, so no ballot ever completes (livelock). With a
  distinguished proposer and randomized back-off one value is chosen within a few round
  trips. Both runs are traced; the verdict passes when the naive run livelocked and the
  fixed one chose exactly one value that every learner learnt.
* ``basic``: one Basic Paxos round (one proposer, three acceptors), for reading.
* ``failover``: Multi-Paxos, three nodes, a client writing; the leader crashes, a new
  leader runs phase 1 once, fills gaps and carries on.
* no scenario: the replicated KV workload under a nemesis (``giants.core.kvsim``), with
  the Paxos invariants checked on every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from giants.core.process import Durable
from giants.core.sim import SimNetworkOptions, Simulation
from giants.core.testing.consensus_conformance import SimCluster, build_cluster
from giants.core.testing.history import History
from giants.core.testing.kv_workload import KVWorkloadClient, WorkloadMix
from giants.core.testing.linearizability import check_kv_linearizable
from giants.core.trace import TraceWriter
from giants.paxos._basic import BasicPaxosNode
from giants.paxos._core import DEFAULT_OPTIONS, paxos_factory
from giants.paxos.invariants import BasicPaxosChecker, MultiPaxosChecker

__all__ = ["DuelResult", "run_duel", "run_basic_round", "run_failover", "run_sim",
           "SCENARIOS", "install_checker"]

SCENARIOS = ("duel", "basic", "failover")
ACCEPTORS = ["a1", "a2", "a3"]
DUEL_NETWORK = SimNetworkOptions(min_delay_s=0.0095, max_delay_s=0.0105)
DUEL_TICK_S = 0.001
DUEL_RETRY_TICKS = 30
SECOND_PROPOSER_AT_S = 0.015


@dataclass
class DuelResult:
    mode: str
    chosen: Any
    chosen_at: float | None
    ballots: int
    learnt: dict[str, Any]
    sim: Simulation


def _basic_world(seed: int, mode: str, proposers: list[str], trace: TraceWriter | None,
                 network: SimNetworkOptions, retry_ticks: int = DUEL_RETRY_TICKS,
                 ) -> tuple[Simulation, BasicPaxosChecker]:
    sim = Simulation(seed, network, trace=trace)
    learners = ACCEPTORS + proposers
    for node in ACCEPTORS + proposers:
        def build(durable: Durable, node: str = node) -> BasicPaxosNode:
            return BasicPaxosNode(node, durable, acceptors=ACCEPTORS, learners=learners,
                                  proposers=proposers, mode=mode,
                                  retry_ticks=retry_ticks, audit=[])
        sim.add_process(node, build, tick_s=DUEL_TICK_S)
    checker = BasicPaxosChecker(sim, ACCEPTORS + proposers, ACCEPTORS).attach()
    return sim, checker


def _fixed(process: Any) -> Any:
    """A factory that always returns the same (client) process object."""
    return lambda _durable: process


def _give_value(sim: Simulation, node: str, value: str) -> None:
    sim.invoke(node, lambda p, io: setattr(p, "value", value))


def run_duel(mode: str, seed: int = 0, *, duration_s: float = 1.0,
             trace: TraceWriter | None = None) -> DuelResult:
    """Two proposers (p1 at 0 ms, p2 at 15 ms) compete for one decree."""
    proposers = ["p1", "p2"]
    sim, checker = _basic_world(seed, mode, proposers, trace, DUEL_NETWORK)
    _give_value(sim, "p1", "from-p1")
    sim.at(SECOND_PROPOSER_AT_S, lambda: _give_value(sim, "p2", "from-p2"))
    nodes = ACCEPTORS + proposers

    def everyone_learnt() -> bool:
        return all(getattr(sim.process(n), "chosen_at", None) is not None for n in nodes)

    sim.run_until(duration_s, stop=everyone_learnt)
    procs = {n: sim.process(n) for n in nodes}
    learnt = {n: p.chosen for n, p in procs.items() if p is not None and p.chosen_at is not None}  # type: ignore[attr-defined]
    ballots = sum(p.ballots_tried for p in procs.values() if p is not None)  # type: ignore[attr-defined]
    times = [p.chosen_at for p in procs.values() if p is not None and p.chosen_at is not None]  # type: ignore[attr-defined]
    return DuelResult(mode, checker.chosen, min(times) if times else None, ballots, learnt, sim)


def run_basic_round(seed: int = 0, trace: TraceWriter | None = None) -> DuelResult:
    """One proposer, three acceptors: one clean round of Basic Paxos."""
    sim, checker = _basic_world(seed, "naive", ["p1"], trace, DUEL_NETWORK, retry_ticks=100)
    _give_value(sim, "p1", "v1")
    sim.run_until(0.5, stop=lambda: all(
        getattr(sim.process(n), "chosen_at", None) is not None for n in [*ACCEPTORS, "p1"]))
    p1 = sim.process("p1")
    assert isinstance(p1, BasicPaxosNode)
    return DuelResult("basic", checker.chosen, p1.chosen_at, p1.ballots_tried,
                      {"p1": p1.chosen}, sim)


def install_checker(cluster: SimCluster) -> None:
    """``on_cluster`` hook: check the Paxos invariants on every step of ``cluster``."""
    MultiPaxosChecker(cluster.sim, cluster.nodes, alpha=int(DEFAULT_OPTIONS["alpha"])).attach()


def run_failover(seed: int = 0, trace: TraceWriter | None = None,
                 crash_at_s: float = 0.6, run_s: float = 2.0) -> tuple[Simulation, History, str, str]:
    """Three Multi-Paxos nodes, one client; crash the leader; returns the old and new
    leader. Raises ``AssertionError`` if the history is not linearizable."""
    sim = Simulation(seed, trace=trace)
    cluster = build_cluster(sim, paxos_factory, 3, options={"audit": True})
    install_checker(cluster)
    history = History()
    clients = [KVWorkloadClient(f"c{i}", cluster.nodes, history, ops=25, think_s=0.03,
                                mix=WorkloadMix(get=1, put=3, cas=0)) for i in range(2)]
    for c in clients:
        sim.add_process(c.client_id, _fixed(c), tick_s=0.005)
    sim.run_until(crash_at_s - 0.05)
    old = cluster.leader()
    assert old is not None, f"seed {seed}: no leader by {crash_at_s}s"
    # the last 50 ms of the old leader's Accepts reach only one follower: the new
    # leader finds them in a promise (or its own log) and re-proposes them
    cut_off = next(n for n in cluster.nodes if n != old)
    sim.block(old, cut_off)
    sim.run_until(crash_at_s)
    sim.crash(old)
    sim.unblock(old, cut_off)
    sim.run_until(run_s, stop=lambda: all(c.done for c in clients))
    sim.restart(old)
    sim.run_for(0.5)
    new = cluster.leader()
    assert new is not None and new != old, f"seed {seed}: no new leader after the crash"
    result = check_kv_linearizable(history)
    assert result.ok, f"seed {seed}: not linearizable:\n{result.explain()}"
    return sim, history, old, new


# -- giants sim paxos ----------------------------------------------------------------


def _save(trace: TraceWriter, trace_dir: str, name: str) -> str:
    os.makedirs(trace_dir, exist_ok=True)
    path = os.path.join(trace_dir, name)
    trace.save(path)
    return path


def _sim_duel(args: Any, trace_dir: str) -> int:
    ok = True
    for mode in ("naive", "distinguished"):
        trace = TraceWriter()
        res = run_duel(mode, args.seed, trace=trace)
        path = _save(trace, trace_dir, f"paxos-duel-{mode}-seed{args.seed}.trace.jsonl")
        if res.chosen is None:
            print(f"{mode:>13}: LIVELOCK -- nothing chosen in {res.sim.now:.2f}s virtual, "
                  f"{res.ballots} ballots started")
        else:
            print(f"{mode:>13}: chose {res.chosen!r} at {(res.chosen_at or 0) * 1000:.0f} ms after "
                  f"{res.ballots} ballot(s); learnt by {len(res.learnt)}/5 nodes")
        print(f"{'':>13}  trace: {path}   (render: giants trace {path})")
        if mode == "naive":
            ok = ok and res.chosen is None
        else:
            ok = ok and res.chosen is not None and len(set(map(repr, res.learnt.values()))) == 1 \
                and len(res.learnt) == 5
    print("duel: naive proposers livelock; a distinguished proposer with randomized back-off "
          "gets one value chosen" if ok else "duel: unexpected outcome (see the traces)")
    return 0 if ok else 1


def run_sim(args: Any) -> int:
    """``System.sim`` for ``paxos``: a scenario, or the KV workload under a nemesis."""
    from giants.core.kvsim import run_kv_sim

    scenario = getattr(args, "scenario", None)
    trace_dir = getattr(args, "trace_dir", None) or ".giants/traces"
    seed = int(getattr(args, "seed", 0) or 0)
    if scenario in (None, "", "kv"):
        return run_kv_sim("paxos", paxos_factory, seed=seed, nemesis=getattr(args, "nemesis", None),
                          ops=int(getattr(args, "ops", 500) or 500),
                          nodes=int(getattr(args, "nodes", None) or 5), trace_dir=trace_dir,
                          options={"audit": True}, on_cluster=install_checker)
    if scenario == "duel":
        return _sim_duel(args, trace_dir)
    trace = TraceWriter()
    if scenario == "basic":
        res = run_basic_round(seed, trace)
        print(f"basic: {res.chosen!r} chosen at {(res.chosen_at or 0) * 1000:.0f} ms in one ballot"
              if res.chosen is not None else "basic: nothing chosen")
        code = 0 if res.chosen is not None else 1
    elif scenario == "failover":
        try:
            sim, history, old, new = run_failover(seed, trace)
        except AssertionError as exc:
            print(f"failover: FAIL {exc}")
            code = 1
        else:
            done = sum(1 for op in history.operations() if op.status == "ok")
            print(f"failover: leader {old} crashed, {new} took over; {done} operations ok, "
                  f"history linearizable, invariants held on {sim.stats.events} steps")
            code = 0
    else:
        print(f"unknown scenario {scenario!r}; paxos has: {', '.join(SCENARIOS)}")
        return 2
    path = _save(trace, trace_dir, f"paxos-{scenario}-seed{seed}.trace.jsonl")
    print(f"trace: {path}   (render: giants trace {path})")
    return code
