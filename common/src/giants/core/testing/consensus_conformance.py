"""The consensus conformance suite: what every consensus plugin must pass, unchanged.

A plugin hands over its ``ConsensusFactory`` (and the ``options`` its cores take in
simulation); each check builds a simulated cluster of ``ReplicatedService`` nodes over
it, runs a workload, and raises ``AssertionError`` with the seed on failure::

    @pytest.mark.parametrize("check", CONFORMANCE_CHECKS, ids=lambda c: c.__name__)
    def test_conformance(check, giants_seeds):
        for seed in giants_seeds(20):
            check(raft_factory, seed, options={})

Checks: linearizable KV histories under every nemesis kind with progress after heal;
exactly-once application of retried commands; malformed commands rejected before the
log; recovery of every acknowledged write after all nodes restart; a partitioned node
catching up through a snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from giants.core.consensus import ConsensusConfig, ConsensusFactory
from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import Rejected
from giants.core.kv import KVStateMachine
from giants.core.process import Durable, Io
from giants.core.rsm import (
    ClientCommand,
    ClientQuery,
    CommandResult,
    QueryResult,
    ReplicatedService,
)
from giants.core.sim import SimNetworkOptions, Simulation
from giants.core.testing.history import History
from giants.core.testing.kv_workload import KVWorkloadClient, WorkloadMix
from giants.core.testing.linearizability import check_kv_linearizable
from giants.core.testing.nemesis import ALL_KINDS, Nemesis
from giants.core.trace import TraceWriter

__all__ = [
    "SimCluster",
    "build_cluster",
    "run_kv_workload",
    "WorkloadResult",
    "CONFORMANCE_CHECKS",
    "check_linearizable_under_faults",
    "check_exactly_once",
    "check_rejects_malformed",
    "check_restart_recovers_acknowledged",
    "check_snapshot_catch_up",
]


@dataclass
class SimCluster:
    sim: Simulation
    nodes: list[str]
    services: Callable[[str], ReplicatedService | None]

    def leader(self) -> str | None:
        """The node that believes itself leader with the highest claim (for nemeses)."""
        for n in self.nodes:
            svc = self.services(n)
            if svc is not None and svc.consensus.leader() == n:
                return n
        return None


def build_cluster(
    sim: Simulation,
    factory: ConsensusFactory,
    n: int,
    *,
    options: dict[str, Any] | None = None,
    sm_factory: Callable[[], Any] = KVStateMachine,
    snapshot_every: int = 1_000,
    tick_s: float = 0.01,
) -> SimCluster:
    nodes = [f"n{i}" for i in range(n)]
    peers = {x: x for x in nodes}

    def make(node: str) -> Callable[[Durable], ReplicatedService]:
        def build(durable: Durable) -> ReplicatedService:
            config = ConsensusConfig(node, peers, options=dict(options or {}))
            return ReplicatedService(sm_factory(), factory, config, durable,
                                     snapshot_every=snapshot_every)
        return build

    for node in nodes:
        sim.add_process(node, make(node), tick_s=tick_s)

    def service(node: str) -> ReplicatedService | None:
        return sim.process(node)  # type: ignore[return-value]

    return SimCluster(sim, nodes, service)


def _constant(process: Any) -> Callable[[Durable], Any]:
    """A factory that always hands back the same (crash-free) client process."""
    return lambda _durable: process


def _kv_data(cluster: SimCluster, node: str) -> dict[str, Any] | None:
    svc = cluster.services(node)
    if svc is None:
        return None
    data: dict[str, Any] = svc.sm.data  # type: ignore[attr-defined]
    return data


@dataclass
class WorkloadResult:
    sim: Simulation
    cluster: SimCluster
    history: History
    clients: list[KVWorkloadClient]
    check: Any


def run_kv_workload(
    factory: ConsensusFactory,
    seed: int,
    *,
    nodes: int = 5,
    clients: int = 4,
    ops_per_client: int = 50,
    nemesis: tuple[str, ...] = ALL_KINDS,
    fault_window_s: float = 6.0,
    options: dict[str, Any] | None = None,
    snapshot_every: int = 1_000,
    network: SimNetworkOptions | None = None,
    trace: TraceWriter | None = None,
    mix: WorkloadMix | None = None,
    max_time_s: float = 120.0,
    on_cluster: Callable[[SimCluster], None] | None = None,
) -> WorkloadResult:
    """Run a KV workload under a nemesis, heal, let every client finish, and check the
    history for linearizability. Asserts that all clients finished (progress after heal).
    ``on_cluster(cluster)`` runs once the cluster is built, before any workload (a
    plugin installs its per-step invariant checks there, ``sim.after_event``)."""
    sim = Simulation(seed, network, trace=trace)
    cluster = build_cluster(sim, factory, nodes, options=options, snapshot_every=snapshot_every)
    if on_cluster is not None:
        on_cluster(cluster)
    history = History()
    workers = []
    # Spread each client's operations over the fault window (and a little past it), so
    # the faults land in the middle of the workload rather than after it finished.
    think_s = fault_window_s * 1.2 / max(1, ops_per_client) if nemesis else 0.0
    for i in range(clients):
        c = KVWorkloadClient(f"c{i}", cluster.nodes, history, ops=ops_per_client, mix=mix,
                             think_s=think_s)
        workers.append(c)
        sim.add_process(f"c{i}", _constant(c), tick_s=0.005)
    nem = Nemesis(sim, cluster.nodes, nemesis, leader_fn=cluster.leader)
    nem.start(stop_at=fault_window_s)
    sim.run_until(max_time_s, stop=lambda: all(w.done for w in workers))
    unfinished = [w.client_id for w in workers if not w.done]
    assert not unfinished, (
        f"seed {seed}: clients {unfinished} made no progress by t={sim.now:.1f}s "
        f"(faults healed at {fault_window_s}s; injected {nem.injected})")
    result = check_kv_linearizable(history)
    assert result.ok, f"seed {seed}: history not linearizable:\n{result.explain()}"
    return WorkloadResult(sim, cluster, history, workers, result)


# -- the checks -------------------------------------------------------------------------


def check_linearizable_under_faults(factory: ConsensusFactory, seed: int,
                                    options: dict[str, Any] | None = None) -> None:
    """5 nodes, 4 clients, every nemesis kind; linearizable, and progress after heal."""
    run_kv_workload(factory, seed, options=options, snapshot_every=40)


class _Probe:
    """A scripted client process: sends what the test queues, keeps every reply."""

    def __init__(self) -> None:
        self.replies: list[Envelope] = []

    def start(self, io: Io) -> None:
        return None

    def tick(self, io: Io) -> None:
        return None

    def receive(self, io: Io, env: Envelope) -> None:
        self.replies.append(env)


def _leader_of(cluster: SimCluster, wait_s: float = 10.0) -> str:
    sim = cluster.sim
    sim.run_for(wait_s, stop=lambda: cluster.leader() is not None)
    leader = cluster.leader()
    assert leader is not None, f"seed {sim.seed}: no leader elected within {wait_s}s"
    sim.run_for(0.3)  # let the leader commit an entry of its own term
    leader = cluster.leader()
    assert leader is not None
    return leader


def _call(cluster: SimCluster, probe_id: str, target: str, body: Any, wait_s: float = 2.0) -> Any:
    sim = cluster.sim
    probe = sim.process(probe_id)
    assert isinstance(probe, _Probe)
    sent: list[int] = []
    sim.invoke(probe_id, lambda _p, io: sent.append(io.send(target, body)))
    sim.run_for(wait_s, stop=lambda: any(r.in_reply_to == sent[0] for r in probe.replies))
    for r in probe.replies:
        if r.in_reply_to == sent[0]:
            return r.body
    return None


def check_exactly_once(factory: ConsensusFactory, seed: int,
                       options: dict[str, Any] | None = None) -> None:
    """The same command (same session seq) sent many times is applied once."""
    sim = Simulation(seed, SimNetworkOptions(duplicate=0.3))
    cluster = build_cluster(sim, factory, 3, options=options)
    probe = _Probe()
    sim.add_process("probe", lambda _d: probe)
    leader = _leader_of(cluster)
    cmd = ClientCommand("probe", 1, ["cas", "x", None, "first"])
    first = None
    for _ in range(5):
        leader = cluster.leader() or leader
        reply = _call(cluster, "probe", leader, cmd)
        if isinstance(reply, CommandResult):
            first = first if first is not None else reply.result
            assert reply.result is True, f"seed {seed}: retry answered {reply.result!r}, not the original True"
    assert first is True, f"seed {seed}: the command never succeeded"
    # a second session's conflicting cas must now fail: the value is "first"
    r = _call(cluster, "probe", cluster.leader() or leader, ClientCommand("other", 1, ["cas", "x", None, "second"]))
    assert isinstance(r, CommandResult) and r.result is False, f"seed {seed}: {r!r}"
    r = _call(cluster, "probe", cluster.leader() or leader, ClientQuery(["get", "x"]))
    assert isinstance(r, QueryResult) and r.result == "first", f"seed {seed}: {r!r}"


def check_rejects_malformed(factory: ConsensusFactory, seed: int,
                            options: dict[str, Any] | None = None) -> None:
    """A command that fails validation is answered Rejected and never reaches the log."""
    sim = Simulation(seed)
    cluster = build_cluster(sim, factory, 3, options=options)
    probe = _Probe()
    sim.add_process("probe", lambda _d: probe)
    leader = _leader_of(cluster)
    before = {n: cluster.services(n).applied_index for n in cluster.nodes}  # type: ignore[union-attr]
    for bad in (["bogus", "x"], ["put", 7, "v"], "not-a-list", ["put", "x"]):
        r = _call(cluster, "probe", leader, ClientCommand("probe", 1, bad))
        assert isinstance(r, ErrorReply), f"seed {seed}: {bad!r} answered {r!r}"
        assert isinstance(r.exception(), Rejected), f"seed {seed}: {r!r}"
    sim.run_for(1.0)
    after = {n: cluster.services(n).applied_index for n in cluster.nodes}  # type: ignore[union-attr]
    # no-ops and heartbeats may commit, but nothing of the client's: the data is empty
    for n in cluster.nodes:
        data = _kv_data(cluster, n)
        assert data == {}, f"seed {seed}: {n} applied {data}"
    assert all(after[n] >= before[n] for n in cluster.nodes)


def check_restart_recovers_acknowledged(factory: ConsensusFactory, seed: int,
                                        options: dict[str, Any] | None = None) -> None:
    """Every acknowledged write survives a crash and restart of every node at once."""
    res = run_kv_workload(factory, seed, nodes=3, clients=3, ops_per_client=30,
                          nemesis=("crash",), fault_window_s=3.0, options=options,
                          snapshot_every=25, mix=WorkloadMix(get=1, put=6, cas=0))
    sim, cluster = res.sim, res.cluster
    for n in cluster.nodes:
        sim.crash(n)
    for n in cluster.nodes:
        sim.restart(n)
    probe = _Probe()
    sim.add_process("probe", lambda _d: probe)
    leader = _leader_of(cluster)
    history = res.history
    keys = sorted({str(op.key) for op in history.operations()})
    for key in keys:
        op_id = history.invoke("after-restart", "get", None, key=key, time=sim.now)
        r = None
        for _ in range(5):
            r = _call(cluster, "probe", cluster.leader() or leader, ClientQuery(["get", key]))
            if isinstance(r, QueryResult):
                break
        assert isinstance(r, QueryResult), f"seed {seed}: read of {key} after restart: {r!r}"
        history.ok(op_id, r.result, time=sim.now)
    # The reads after the restart join the history: it stays linearizable only if every
    # acknowledged write survived.
    result = check_kv_linearizable(history)
    assert result.ok, f"seed {seed}: acknowledged writes lost over restart:\n{result.explain()}"


def check_snapshot_catch_up(factory: ConsensusFactory, seed: int,
                            options: dict[str, Any] | None = None) -> None:
    """A node cut off while the others compact their logs catches up (by snapshot)."""
    sim = Simulation(seed)
    cluster = build_cluster(sim, factory, 3, options=options, snapshot_every=10)
    probe = _Probe()
    sim.add_process("probe", lambda _d: probe)
    leader = _leader_of(cluster)
    laggard = next(n for n in cluster.nodes if n != leader)
    sim.isolate(laggard, cluster.nodes)
    for i in range(60):
        target = cluster.leader() or leader
        r = _call(cluster, "probe", target, ClientCommand("probe", i + 1, ["put", f"k{i % 7}", i]))
        assert isinstance(r, CommandResult), f"seed {seed}: write {i} answered {r!r}"
    sim.heal()
    want = _kv_data(cluster, cluster.leader() or leader)
    sim.run_for(10.0, stop=lambda: _kv_data(cluster, laggard) == want)
    got = _kv_data(cluster, laggard)
    assert got == want, f"seed {seed}: laggard {laggard} has {got}, leader {want}"


CONFORMANCE_CHECKS: list[Callable[..., None]] = [
    check_linearizable_under_faults,
    check_exactly_once,
    check_rejects_malformed,
    check_restart_recovers_acknowledged,
    check_snapshot_catch_up,
]
