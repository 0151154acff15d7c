"""A seeded simulation of leases and invalidation across regions, with its checker.

Scaling Memcache at Facebook §3.2.1 (leases), §4.1 (mcsqueal) and §5 (a master region and
a replica region whose database is fed by replication and whose own mcsqueal tails the
replica's log). The world (``giants.core.sim``): a master database ``db``, a replica
``db-r``; region A has two front-end clusters (``a1``, ``a2``) of cache nodes, region B
one (``b1``); each region has a squeal daemon broadcasting deletes to its clusters; web
servers in every cluster run a read-heavy look-aside workload on a few hot keys (region B
writes go to the master, reads to the replica). A nemesis loses, duplicates and reorders
messages and crashes and restarts cache nodes and daemons.

The checker runs after every simulator event: once a region's daemon has finished the
round containing a log entry (key, version), no cache node of that region may hold an
older version of the key -- "no stale value persists after invalidation". At the end,
after the workload stops and the daemons catch up, every cached value must equal the
database's. ``use_leases=False`` fills with plain sets, reproducing the paper's stale-set
race; the checker then catches it in a good share of seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Final

from giants.core.process import Durable, Io, Process
from giants.core.sim import SimNetworkOptions, Simulation
from giants.core.trace import TraceWriter
from giants.memcache._db import DbProcess
from giants.memcache._simnodes import CacheNode, SquealNode, WebNode, decode_value

__all__ = ["MemcacheSimResult", "run_memcache_sim", "NEMESES"]

NEMESES: Final = ("loss", "duplicate", "reorder", "crash")
KEYS: Final = tuple(f"user:{i}" for i in range(6))
WRITE_FRACTION: Final = 0.2
OP_GAP_S: Final = (0.001, 0.02)
SETTLE_LIMIT_S: Final = 30.0


@dataclass
class _Region:
    name: str
    db: str
    squeal: str
    caches: list[str]
    checked_pos: int = 0
    required: dict[str, int] = field(default_factory=dict)
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # node -> (store id, cas)


@dataclass
class MemcacheSimResult:
    seed: int
    ops: int
    violations: list[str]
    final_mismatches: list[str]
    reads: int
    hits: int
    db_reads: int
    fills_rejected: int
    waits: int
    staleness_ms: list[float]
    sim_time_s: float

    @property
    def ok(self) -> bool:
        return not self.violations and not self.final_mismatches

    def hit_ratio(self) -> float:
        return self.hits / self.reads if self.reads else 0.0

    def staleness_summary(self) -> str:
        if not self.staleness_ms:
            return "no writes"
        s = sorted(self.staleness_ms)
        return (f"median {statistics.median(s):.1f} ms, p99 {s[int(0.99 * (len(s) - 1))]:.1f}"
                f" ms, max {s[-1]:.1f} ms over {len(s)} log entries")


def _build(sim: Simulation, use_leases: bool, clients_per_cluster: int
           ) -> tuple[list[_Region], list[str]]:
    sim.add_process("db", DbProcess, tick_s=0.01)
    sim.add_process("db-r", partial(DbProcess, upstream="db"), tick_s=0.01)
    clusters = {"a1": "A", "a2": "A", "b1": "B"}
    caches = {c: [f"{c}-mc{i}" for i in range(2)] for c in clusters}
    for names in caches.values():
        for n in names:
            sim.add_process(n, CacheNode, tick_s=0.1)
    regions = [
        _Region("A", "db", "squeal-a", caches["a1"] + caches["a2"]),
        _Region("B", "db-r", "squeal-b", caches["b1"]),
    ]
    for r in regions:
        targets = list(r.caches)
        sim.add_process(r.squeal, partial(_squeal, db=r.db, targets=targets), tick_s=0.005)
    webs = []
    for cluster, region in clusters.items():
        read_db = "db" if region == "A" else "db-r"
        for i in range(clients_per_cluster):
            name = f"web-{cluster}-{i}"
            sim.add_process(name, partial(_web, caches=caches[cluster], db=read_db,
                                          use_leases=use_leases), tick_s=0.005)
            webs.append(name)
    return regions, webs


def run_memcache_sim(seed: int, *, ops: int = 400, nemesis: str = "loss,duplicate,reorder,crash",
                     use_leases: bool = True, clients_per_cluster: int = 3,
                     trace: TraceWriter | None = None) -> MemcacheSimResult:
    """Run one seeded simulation (see the module docstring) and check it."""
    kinds = {k for k in nemesis.split(",") if k} if nemesis not in ("", "none") else set()
    unknown = kinds - set(NEMESES)
    if unknown:
        raise ValueError(f"unknown nemesis {sorted(unknown)}; choose from {NEMESES}")
    net = SimNetworkOptions(
        min_delay_s=0.0005, max_delay_s=0.004,
        loss=0.01 if "loss" in kinds else 0.0,
        duplicate=0.02 if "duplicate" in kinds else 0.0,
        reorder=0.05 if "reorder" in kinds else 0.0, reorder_delay_s=0.01)
    sim = Simulation(seed, net, trace=trace)
    regions, webs = _build(sim, use_leases, clients_per_cluster)
    rng = sim.rng
    violations: list[str] = []
    commit_at: dict[int, float] = {}
    issued = [0]

    def check(s: Simulation) -> None:
        db = s.process("db")
        assert isinstance(db, DbProcess)
        for seq in range(len(commit_at) + 1, db.head + 1):
            commit_at[seq] = s.now
        for r in regions:
            _check_region(s, r, violations)

    sim.after_event.append(check)

    def op(web: str) -> None:
        if issued[0] >= ops:
            return
        proc = sim.process(web)
        if isinstance(proc, WebNode) and not proc.busy():
            issued[0] += 1
            key = rng.choice(KEYS)
            if rng.random() < WRITE_FRACTION:
                sim.invoke(web, partial(_write, key=key, value=f"{web}#{issued[0]}"))
            else:
                sim.invoke(web, partial(_read, key=key))
        sim.after(rng.uniform(*OP_GAP_S), partial(op, web))

    for web in webs:
        sim.after(rng.uniform(*OP_GAP_S), partial(op, web))
    if "crash" in kinds:
        _schedule_crashes(sim, [c for r in regions for c in r.caches] + [r.squeal for r in regions],
                          lambda: issued[0] >= ops)
    sim.run_until(60.0, stop=lambda: issued[0] >= ops)
    sim.heal()
    sim.network.loss = sim.network.duplicate = sim.network.reorder = 0.0
    for n in sim.nodes():
        sim.restart(n)
    _settle(sim, regions)
    mismatches = _final_check(sim, regions)
    return _result(sim, seed, ops, webs, violations, mismatches, commit_at, regions)


def _squeal(durable: Durable, *, db: str, targets: list[str]) -> SquealNode:
    return SquealNode(durable, db=db, targets=targets)


def _web(durable: Durable, *, caches: list[str], db: str, use_leases: bool) -> WebNode:
    return WebNode(durable, caches=caches, db=db, write_db="db", use_leases=use_leases)


def _write(proc: Process, io: Io, *, key: str, value: str) -> None:
    assert isinstance(proc, WebNode)
    proc.write(io, key, value)


def _read(proc: Process, io: Io, *, key: str) -> None:
    assert isinstance(proc, WebNode)
    proc.read(io, key)


def _check_region(sim: Simulation, r: _Region, violations: list[str]) -> None:
    sq = sim.process(r.squeal)
    db = sim.process(r.db)
    advanced = isinstance(sq, SquealNode) and sq.core.position > r.checked_pos
    if advanced and isinstance(sq, SquealNode) and isinstance(db, DbProcess):
        for seq in range(r.checked_pos + 1, sq.core.position + 1):
            key, version, _ = db.log[seq]
            r.required[key] = max(r.required.get(key, 0), version)
        r.checked_pos = sq.core.position
        r.seen.clear()  # new requirements: look at every node again
    if not r.required:
        return
    for node in r.caches:
        cache = sim.process(node)
        if not isinstance(cache, CacheNode):
            continue
        stamp = (id(cache.store), cache.store.last_cas)
        if r.seen.get(node) == stamp:
            continue  # nothing written there since the last look
        r.seen[node] = stamp
        for key, version in r.required.items():
            it = cache.store.peek(key.encode(), sim.now)
            if it is not None and not it.vivified:
                cached = decode_value(it.value)[0]
                if cached < version and len(violations) < 20:
                    violations.append(
                        f"t={sim.now:.4f} {node} holds {key} v{cached} after region {r.name}'s "
                        f"daemon invalidated it for v{version}")


def _schedule_crashes(sim: Simulation, victims: list[str], done: Callable[[], bool]) -> None:
    rng = sim.rng

    def crash() -> None:
        if done():
            return
        node = rng.choice(victims)
        sim.crash(node)
        sim.after(rng.uniform(0.05, 0.3), lambda: sim.restart(node))
        sim.after(rng.uniform(0.3, 1.0), crash)

    sim.after(rng.uniform(0.1, 0.5), crash)


def _settle(sim: Simulation, regions: list[_Region]) -> None:
    def caught_up() -> bool:
        db = sim.process("db")
        assert isinstance(db, DbProcess)
        for r in regions:
            rdb, sq = sim.process(r.db), sim.process(r.squeal)
            if not (isinstance(rdb, DbProcess) and isinstance(sq, SquealNode)):
                return False
            if rdb.head != db.head or sq.core.position != db.head:
                return False
        return all(not p.busy() for n in sim.nodes()
                   if isinstance(p := sim.process(n), WebNode))

    sim.run_for(SETTLE_LIMIT_S, stop=caught_up)


def _final_check(sim: Simulation, regions: list[_Region]) -> list[str]:
    out = []
    for r in regions:
        db = sim.process(r.db)
        sq = sim.process(r.squeal)
        assert isinstance(db, DbProcess) and isinstance(sq, SquealNode)
        if sq.core.position != db.head:
            out.append(f"region {r.name}: daemon at {sq.core.position}, log head {db.head}")
        for node in r.caches:
            cache = sim.process(node)
            assert isinstance(cache, CacheNode)
            for key in KEYS:
                it = cache.store.peek(key.encode(), sim.now)
                if it is None or it.vivified:
                    continue
                cached = decode_value(it.value)[0]
                current = db.rows.get(key, (0, None))[0]
                if cached != current:
                    out.append(f"{node}: {key} cached v{cached}, database v{current}")
    return out


def _result(sim: Simulation, seed: int, ops: int, webs: list[str], violations: list[str],
            mismatches: list[str], commit_at: dict[int, float], regions: list[_Region]
            ) -> MemcacheSimResult:
    reads = hits = db_reads = rejected = waits = 0
    for w in webs:
        p = sim.process(w)
        assert isinstance(p, WebNode)
        reads += p.stats.reads
        hits += p.stats.hits
        db_reads += p.stats.db_reads
        rejected += p.stats.fills_rejected
        waits += p.stats.waits
    staleness = []
    for r in regions:
        sq = sim.process(r.squeal)
        assert isinstance(sq, SquealNode)
        for seq, done in sq.processed_at.items():
            if seq in commit_at:
                staleness.append(1000.0 * (done - commit_at[seq]))
    return MemcacheSimResult(seed, ops, violations, mismatches, reads, hits, db_reads, rejected,
                             waits, staleness, sim.now)
