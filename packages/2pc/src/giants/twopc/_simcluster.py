"""Simulated 2PC clusters, crash points, and the end-of-run checks.

``build_sim`` puts a coordinator (plain, or a replica group on a consensus plugin), N
participant shards and workload clients into one ``Simulation``. ``CrashPlan`` crashes
one node at one protocol step: the step is a trace event the node's core emits
(``prepared``, ``decided``, ``forgotten``, ...), and the crash happens in the same call,
in one of three variants:

* ``before``        -- the call's durable writes and messages are dropped (the node
                       died just before the step);
* ``after_persist`` -- the writes are kept, the messages dropped (it died between its
                       forced log write and sending: the classic window);
* ``after_send``    -- everything of the call happened, then it died.

The node is restarted ``down_s`` later (or never, with ``down_s=None``).

``check_run`` verifies, from what every shard persisted and what clients were told:

* **atomicity** -- every transaction has one outcome at all its shards (the core's
  all-or-nothing checker), committed if a client was told committed, aborted if told
  aborted;
* **no committed write lost** -- each shard's data equals the replay, in that shard's
  commit order, of the writes of the transactions it committed, and every transaction a
  client saw commit is among them (the core's lost-write checker);
* **resolution** -- no shard is left with a prepared (in-doubt) transaction;
* **isolation** -- the clients' transactions are serializable (the core's DSG checker,
  each key's version order from its shard's commit order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from giants.core.consensus import ConsensusFactory
from giants.core.envelope import Envelope
from giants.core.process import Durable, Io, Process
from giants.core.sim import SimNetworkOptions, Simulation
from giants.core.trace import TraceWriter
from giants.twopc._coordinator import Coordinator, CoordinatorOptions
from giants.twopc._participant import (
    DONE_NS,
    KV_NS,
    PREPARED_NS,
    Participant,
    ParticipantOptions,
)
from giants.twopc._replicated import ReplicatedCoordinator
from giants.twopc._sharding import coordinator_names, shard_names
from giants.twopc._workload import TxnRecord, TxnWorkloadClient, WorkloadSpec

__all__ = ["CrashPlan", "SimTxnCluster", "build_sim", "check_run", "RunVerdict", "VARIANTS"]

VARIANTS = ("before", "after_persist", "after_send")


@dataclass
class CrashPlan:
    node: str
    step: str
    occurrence: int = 1
    variant: str = "after_persist"
    down_s: float | None = 1.0
    fired_at: float | None = None
    crashed: str | None = None
    seen: int = 0
    only_to: str | None = None     # after_send: only the messages to this node left

    def matches(self, node: str) -> bool:
        """``node`` is the plan's node, or matches it as a prefix ending in ``*``
        (``coord-*``: whichever coordinator replica reaches the step first)."""
        if self.node.endswith("*"):
            return node.startswith(self.node[:-1])
        return node == self.node


class _Crashing:
    """Wraps a process; crashes its node at the plan's step (see the module docs)."""

    def __init__(self, inner: Any, plan: CrashPlan, sim: Simulation, node: str) -> None:
        self.inner = inner
        self.plan = plan
        self.sim = sim
        self.node = node

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def start(self, io: Io) -> None:
        self.inner.start(io)
        self._check(io)

    def receive(self, io: Io, env: Envelope) -> None:
        self.inner.receive(io, env)
        self._check(io)

    def tick(self, io: Io) -> None:
        self.inner.tick(io)
        self._check(io)

    def _check(self, io: Io) -> None:
        plan = self.plan
        if plan.fired_at is not None:
            return
        plan.seen += sum(1 for ev in io.traces if ev.kind == plan.step)
        if plan.seen < plan.occurrence:
            return
        plan.fired_at = self.sim.now
        plan.crashed = self.node
        if plan.variant == "before":
            io.persists.clear()
            io.sends.clear()
        elif plan.variant == "after_persist":
            io.sends.clear()
        elif plan.only_to is not None:
            io.sends[:] = [e for e in io.sends if e.target == plan.only_to]
        self.sim.crash(self.node)
        if plan.down_s is not None:
            self.sim.after(plan.down_s, lambda: self.sim.restart(self.node))


@dataclass
class SimTxnCluster:
    sim: Simulation
    coordinators: list[str]
    shards: list[str]
    clients: list[TxnWorkloadClient]
    records: list[TxnRecord]
    plan: CrashPlan | None = None

    def participant(self, name: str) -> Participant | None:
        p: Any = self.sim.process(name)
        p = p.inner if isinstance(p, _Crashing) else p
        assert p is None or isinstance(p, Participant)
        return p

    def coordinator(self, name: str) -> Any:
        p = self.sim.process(name)
        return p.inner if isinstance(p, _Crashing) else p

    def clients_done(self) -> bool:
        return all(c.finished for c in self.clients)

    def run(self, until_s: float, settle_s: float = 8.0, *, restart: bool = True) -> None:
        """Run until every client finished (or ``until_s``); then (with ``restart``) heal
        and restart every node; then let the protocol settle for ``settle_s``."""
        self.sim.run_until(max(until_s, self.sim.now), stop=self.clients_done)
        if restart:
            self.sim.heal()
            for n in self.coordinators + self.shards:
                if not self.sim.is_up(n):
                    self.sim.restart(n)
        self.sim.run_for(settle_s)

    def in_doubt(self) -> dict[str, list[str]]:
        """Shard -> transactions it holds PREPARED records for (from its durable state)."""
        out = {}
        for s in self.shards:
            left = [str(t) for t, _ in self.sim.durable(s).items(PREPARED_NS)]
            if left:
                out[s] = left
        return out


def build_sim(seed: int, *, shards: int = 3, clients: int = 3, txns: int = 4,
              keys: int = 8, consensus: ConsensusFactory | None = None, replicas: int = 3,
              consensus_options: dict[str, Any] | None = None,
              participant: ParticipantOptions | None = None,
              coordinator: CoordinatorOptions | None = None,
              network: SimNetworkOptions | None = None, plan: CrashPlan | None = None,
              spec: WorkloadSpec | None = None, trace: TraceWriter | None = None,
              tick_s: float = 0.02, buggify: bool = False,
              specs: list[WorkloadSpec] | None = None) -> SimTxnCluster:
    """A cluster: plain coordinator ``coord-0`` (or ``replicas`` replicated ones when a
    ``consensus`` factory is given), shards ``shard-i``, clients ``client-i``."""
    sim = Simulation(seed, network or SimNetworkOptions(), trace=trace, buggify=buggify,
                     buggify_fire_p=0.2)
    shard_ids = shard_names(shards)
    coord_ids = coordinator_names(replicas if consensus is not None else 1)
    records: list[TxnRecord] = []

    def wrap(node: str, build: Callable[[Durable], Any]) -> Callable[[Durable], Process]:
        if plan is None or not plan.matches(node):
            return build
        return lambda durable: _Crashing(build(durable), plan, sim, node)

    def coordinator_of(c: str) -> Callable[[Durable], Any]:
        def build(d: Durable) -> Any:
            if consensus is None:
                return Coordinator(c, d, shards=shard_ids, options=coordinator)
            return ReplicatedCoordinator(
                c, d, peers={x: x for x in coord_ids}, consensus=consensus, shards=shard_ids,
                options=coordinator, consensus_options=consensus_options)
        return build

    for c in coord_ids:
        sim.add_process(c, wrap(c, coordinator_of(c)), tick_s=tick_s)
    popts = participant or ParticipantOptions()
    if not popts.detector:
        popts = replace(popts, detector=list(coord_ids))

    def participant_of(s: str) -> Callable[[Durable], Any]:
        return lambda d: Participant(s, d, popts)

    for s in shard_ids:
        sim.add_process(s, wrap(s, participant_of(s)), tick_s=tick_s)
    spec = spec or WorkloadSpec(keys=[f"k{i}" for i in range(keys)], txns=txns)
    workload = []
    for i in range(clients):
        mine = specs[i % len(specs)] if specs else spec
        client = TxnWorkloadClient(f"client-{i}", coord_ids, shard_ids, mine, records)
        workload.append(client)
        sim.add_process(client.name, _constant(client), tick_s=tick_s)
    return SimTxnCluster(sim, coord_ids, shard_ids, workload, records, plan)


def _constant(process: Any) -> Callable[[Durable], Any]:
    """A factory that always returns the same object: clients survive "restarts"."""
    return lambda d: process


@dataclass
class RunVerdict:
    ok: bool
    problems: list[str]
    committed: int
    aborted: int
    unknown: int

    def __str__(self) -> str:
        head = "PASS" if self.ok else "FAIL"
        text = (f"{head}: {self.committed} committed, {self.aborted} aborted, "
                f"{self.unknown} unknown")
        return text + "".join(f"\n  - {p}" for p in self.problems[:10])


def shard_outcomes(cluster: SimTxnCluster) -> dict[str, dict[str, tuple[bool, int]]]:
    """shard -> txn -> (committed, seq), from what each shard persisted."""
    out = {}
    for s in cluster.shards:
        d = cluster.sim.durable(s)
        out[s] = {str(t): (bool(v[0]), int(v[1])) for t, v in d.items(DONE_NS)}
    return out


def check_run(cluster: SimTxnCluster, *, isolation: bool = True) -> RunVerdict:
    """The checks of the module docstring; ``problems`` lists every violation."""
    from giants.twopc._checks import check_atomic, check_durable, check_isolation

    problems: list[str] = []
    outcomes = shard_outcomes(cluster)
    for s in cluster.shards:
        d = cluster.sim.durable(s)
        left = [str(t) for t, _ in d.items(PREPARED_NS)]
        if left:
            problems.append(f"{s} still in doubt about {left}")
    problems += [f"{c.name} did not finish its transactions" for c in cluster.clients
                 if not c.finished]
    by_txn = {r.txn: r for r in cluster.records}
    problems += check_atomic(by_txn, outcomes, cluster.shards)
    for s in cluster.shards:
        data = {str(k): v for k, v in cluster.sim.durable(s).items(KV_NS)}
        problems += check_durable(s, cluster.shards, by_txn, outcomes[s], data)
    if isolation:
        problems += check_isolation(cluster.records, outcomes, cluster.shards)
    counts = {st: sum(1 for r in cluster.records if r.status == st)
              for st in ("committed", "aborted", "unknown")}
    return RunVerdict(not problems, problems, counts["committed"], counts["aborted"],
                      counts["unknown"])
