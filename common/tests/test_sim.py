"""The simulator: determinism, its network's faults, and the core's example protocol
(the KV state machine on ``solo`` consensus) under a nemesis, checked linearizable."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from giants.core.codec import message
from giants.core.envelope import Envelope
from giants.core.process import Durable, Io
from giants.core.sim import SimNetworkOptions, Simulation
from giants.core.solo import solo_factory
from giants.core.testing.consensus_conformance import run_kv_workload
from giants.core.testing.kv_workload import WorkloadMix
from giants.core.trace import TraceWriter


@message("test.sim.note")
@dataclass(frozen=True, slots=True)
class Note:
    n: int


class Recorder:
    """Keeps what it receives; persists a counter of messages seen."""

    def __init__(self, durable: Durable) -> None:
        self.seen: list[tuple[str, int]] = []
        self.persisted = durable.get("rec", "count", 0)

    def start(self, io: Io) -> None:
        return None

    def tick(self, io: Io) -> None:
        return None

    def receive(self, io: Io, env: Envelope) -> None:
        self.seen.append((env.source, env.body.n))
        self.persisted += 1
        io.put("rec", "count", self.persisted)


class Sender:
    def __init__(self, target: str, count: int) -> None:
        self.target, self.count, self.sent = target, count, 0

    def start(self, io: Io) -> None:
        return None

    def tick(self, io: Io) -> None:
        if self.sent < self.count:
            self.sent += 1
            io.send(self.target, Note(self.sent))

    def receive(self, io: Io, env: Envelope) -> None:
        return None


def _pair(seed: int, net: SimNetworkOptions | None = None, count: int = 100) -> tuple[Simulation, Recorder]:
    sim = Simulation(seed, net)
    rec: list[Recorder] = []

    def make(d: Durable) -> Recorder:
        rec.append(Recorder(d))
        return rec[-1]

    sim.add_process("r", make)
    sim.add_process("s", lambda _d: Sender("r", count))
    sim.run_for(5.0)
    return sim, rec[-1]


def test_delivers_everything_on_a_clean_network() -> None:
    sim, rec = _pair(1)
    assert sorted(n for _, n in rec.seen) == list(range(1, 101))
    assert sim.stats.delivered == 100 and sim.stats.dropped == 0


def test_jitter_reorders_messages() -> None:
    _, rec = _pair(2, SimNetworkOptions(min_delay_s=0.0, max_delay_s=0.05))
    order = [n for _, n in rec.seen]
    assert sorted(order) == list(range(1, 101)) and order != sorted(order)


def test_loss_and_duplication() -> None:
    _, lossy = _pair(3, SimNetworkOptions(loss=0.3))
    assert 40 < len(lossy.seen) < 95
    _, dup = _pair(4, SimNetworkOptions(duplicate=0.3))
    assert 110 < len(dup.seen) < 160 and set(n for _, n in dup.seen) == set(range(1, 101))


def test_partition_one_way_block_and_heal() -> None:
    sim = Simulation(5)
    rec = Recorder(Durable())
    sim.add_process("r", lambda _d: rec)
    sim.add_process("s", lambda _d: Sender("r", 10_000))
    sim.block("s", "r")
    sim.run_for(1.0)
    assert rec.seen == []
    assert sim.reachable("r", "s")  # the other direction still works
    sim.heal()
    sim.run_for(0.5)
    assert rec.seen
    sim.partition(["r"], ["s"])
    count = len(rec.seen)
    sim.run_for(0.5)
    assert len(rec.seen) <= count + 2  # only what was already in flight... and it is dropped too
    assert len(rec.seen) == count


def test_crash_loses_memory_keeps_durable_state() -> None:
    sim = Simulation(6)
    built: list[Recorder] = []

    def make(d: Durable) -> Recorder:
        built.append(Recorder(d))
        return built[-1]

    sim.add_process("r", make)
    sim.add_process("s", lambda _d: Sender("r", 50))
    sim.run_for(0.2)
    before = built[-1].persisted
    assert before > 0
    sim.crash("r")
    assert sim.process("r") is None
    sim.run_for(0.1)  # messages to a crashed node are lost
    sim.restart("r")
    assert built[-1] is not built[0]
    assert built[-1].seen == [] and built[-1].persisted == before


def test_clog_delays_a_link() -> None:
    sim = Simulation(7)
    rec = Recorder(Durable())
    sim.add_process("r", lambda _d: rec)
    sim.add_process("s", lambda _d: Sender("r", 1))
    sim.clog("s", "r", 1.0)
    sim.run_for(0.5)
    assert rec.seen == []
    sim.run_for(1.0)
    assert rec.seen == [("s", 1)]


def test_clock_drift_is_monotonic() -> None:
    sim = Simulation(8)
    seen: list[float] = []

    class Clock:
        def start(self, io: Io) -> None: ...
        def receive(self, io: Io, env: Envelope) -> None: ...
        def tick(self, io: Io) -> None:
            seen.append(io.now)

    sim.add_process("c", lambda _d: Clock())
    sim.run_for(0.5)
    sim.set_clock("c", rate=2.0, jump_s=1.0)
    sim.run_for(0.5)
    sim.set_clock("c", rate=1.0)
    sim.run_for(0.5)
    assert all(b > a for a, b in itertools.pairwise(seen))
    assert seen[-1] > 2.5  # 1.5 s of real time, +0.5 of drift, +1 jump


def _traced_run(seed: int) -> str:
    trace = TraceWriter()
    run_kv_workload(solo_factory, seed, nodes=1, clients=3, ops_per_client=20,
                    nemesis=("crash", "loss", "duplicate", "reorder"), fault_window_s=2.0,
                    trace=trace, snapshot_every=10)
    return trace.text()


def test_same_seed_same_trace_bytes() -> None:
    a, b = _traced_run(11), _traced_run(11)
    assert a == b and len(a) > 1000
    assert _traced_run(12) != a


@pytest.mark.sim
def test_solo_kv_linearizable_under_faults(giants_seeds: Any) -> None:
    for seed in giants_seeds(30):
        res = run_kv_workload(solo_factory, seed, nodes=1, clients=3, ops_per_client=30,
                              nemesis=("crash", "loss", "duplicate", "reorder", "skew"),
                              fault_window_s=3.0, snapshot_every=15,
                              mix=WorkloadMix(keys=("a", "b"), get=3, put=3, cas=3, delete=1))
        assert res.check.ok
        assert sum(c.completed for c in res.clients) > 0
