"""GFS in the deterministic simulator: a world builder, scenarios and their checkers.

``GfsWorld`` puts a master, shadow masters, chunkservers (each over a
``MemoryChunkStore`` that survives its crashes, like a disk) and client processes in one
``giants.core.sim.Simulation``. Bulk data travels as ``PushData`` messages (the real
driver streams it). The scenarios check the paper's guarantees (§2.7, §3.3, §2.6.3):

* ``append_scenario``: many clients record-append unique records to one file while
  chunkservers crash and restart (and, optionally, the master too) -- every
  acknowledged record must be whole at its offset on every up-to-date replica;
* ``serial_write_scenario``: one client writes at offsets under chunkserver crashes --
  the regions its successful writes defined (not touched by a later failed write) must
  hold that data on every up-to-date replica;
* the master may crash and restart in both; afterwards every acknowledged namespace
  mutation and append is still there, recovered from checkpoint + log tail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from giants.core.errors import IndefiniteError, Rejected, Unavailable
from giants.core.process import Durable
from giants.core.sim import SimNetworkOptions, Simulation
from giants.core.trace import TraceWriter
from giants.gfs._chunkserver import ChunkserverConfig, ChunkserverCore
from giants.gfs._chunkstore import MemoryChunkStore, PushBuffer
from giants.gfs._clientops import (
    ClientState,
    Op,
    Sleep,
    namespace_op,
    read,
    record_append,
    write,
)
from giants.gfs._master import MasterConfig, MasterCore
from giants.gfs._messages import Create, Snapshot
from giants.gfs._shadow import ShadowConfig, ShadowCore
from giants.gfs._simclient import SimClient, WorkItem

__all__ = ["SimOptions", "GfsWorld", "append_scenario", "serial_write_scenario",
           "ScenarioResult"]


@dataclass
class SimOptions:
    chunkservers: int = 4
    shadows: int = 1
    replication: int = 3
    chunk_size: int = 4096
    lease_s: float = 2.0
    heartbeat_s: float = 0.25
    dead_after_s: float = 1.0
    checkpoint_every: int = 25
    loss: float = 0.0
    duplicate: float = 0.0
    tick_s: float = 0.05


@dataclass
class ScenarioResult:
    seed: int
    ok: bool
    problems: list[str]
    acked: int
    failed: int
    stats: dict[str, Any] = field(default_factory=dict)


class GfsWorld:
    """A simulated GFS cluster."""

    def __init__(self, seed: int, opts: SimOptions | None = None,
                 trace: TraceWriter | None = None) -> None:
        self.opts = o = opts or SimOptions()
        self.sim = Simulation(seed, SimNetworkOptions(loss=o.loss, duplicate=o.duplicate),
                              trace=trace)
        self.shadows = [f"shadow-{i}" for i in range(o.shadows)]
        self.chunkservers = [f"cs-{i}" for i in range(o.chunkservers)]
        self.stores = {cs: MemoryChunkStore() for cs in self.chunkservers}
        self.master_config = MasterConfig(
            "master", tuple(self.shadows), o.chunk_size, o.replication, o.lease_s,
            o.dead_after_s, request_timeout_s=0.5, clone_timeout_s=2.0,
            replicate_every_s=0.2, rebalance_every_s=2.0, gc_after_s=5.0, gc_scan_s=1.0,
            checkpoint_every=o.checkpoint_every, shadow_sync_timeout_s=0.5,
            shadow_resend_s=0.2)
        self.sim.add_process("master", lambda d: MasterCore(self.master_config, d),
                             tick_s=o.tick_s)
        for s in self.shadows:
            cfg = ShadowConfig(s, "master", o.chunk_size, o.replication, o.lease_s,
                               o.dead_after_s, o.checkpoint_every)
            self.sim.add_process(s, partial(ShadowCore, cfg), tick_s=o.tick_s)
        for cs in self.chunkservers:
            ccfg = ChunkserverConfig(cs, cs, ("master", *self.shadows), o.chunk_size,
                                     o.heartbeat_s, mutation_timeout_s=0.5,
                                     clone_timeout_s=2.0, scan_every_s=1.0)
            self.sim.add_process(cs, partial(_chunkserver, ccfg, self.stores[cs]),
                                 tick_s=o.tick_s)
        self.results: list[tuple[str, str, str, Any]] = []
        self.started: dict[tuple[str, str], float] = {}   # (client, op) -> virtual time
        self.finished: dict[tuple[str, str], float] = {}
        self.clients: list[str] = []
        self.faults_on = True

    def add_client(self, name: str, work: list[WorkItem], *, start_at: float = 0.0,
                   think_s: float = 0.1) -> None:
        def record(op: str, outcome: str, value: Any) -> None:
            self.results.append((name, op, outcome, value))
            self.finished[(name, op)] = self.sim.now

        def timed(op: str, make: Callable[[ClientState], Op]) -> Callable[[ClientState], Op]:
            def start(st: ClientState) -> Op:
                self.started[(name, op)] = self.sim.now
                return make(st)
            return start

        work = [(op, timed(op, make)) for op, make in work]
        masters = ["master", *self.shadows]
        self.sim.add_process(
            name, lambda d: SimClient(name, masters, work, record, self.sim.rng,
                                      timeout_s=0.5, start_at=start_at,
                                      think_s=think_s),
            tick_s=0.01)
        self.clients.append(name)

    def master(self) -> MasterCore:
        m = self.sim.process("master")
        assert isinstance(m, MasterCore)
        return m

    def clients_done(self) -> bool:
        return all(getattr(self.sim.process(c), "done", True) for c in self.clients)

    def up_to_date(self) -> bool:
        """Every written chunk at its replication goal (or on every live server)."""
        m = self.master()
        live = len(m.locs.live())
        goal = min(self.opts.replication, live)
        return all(len(m.locs.of(h)) >= goal for h, v in m.log.md.versions.items() if v > 0)

    def settle(self, max_s: float = 30.0) -> None:
        """Stop faults, heal, restart what is down, and let re-replication finish."""
        self.faults_on = False
        self.sim.heal()
        for n in ["master", *self.shadows, *self.chunkservers]:
            self.sim.restart(n)
        self.sim.run_for(max_s, stop=lambda: self.clients_done() and self.up_to_date()
                         and not self.master().clones)
        self.sim.run_for(3 * self.opts.heartbeat_s)

    def replicas(self, handle: int) -> dict[str, bytes]:
        """The bytes of every up-to-date replica of ``handle`` the master knows of."""
        m = self.master()
        out = {}
        for cs in sorted(m.locs.of(handle)):
            core = self.sim.process(cs)
            if isinstance(core, ChunkserverCore) and \
                    core.versions.get(handle) == m.log.md.versions.get(handle):
                store = self.stores[cs]
                out[cs] = store.read(handle, 0, store.length(handle))
        return out

    def file_replicas(self, path: str) -> list[dict[str, bytes]]:
        return [self.replicas(h) for h in self.master().log.md.ns.files.get(path, [])]


def _chunkserver(config: ChunkserverConfig, store: MemoryChunkStore, durable: Durable
                 ) -> ChunkserverCore:
    return ChunkserverCore(config, durable, store, PushBuffer())  # a new buffer per boot


def crash_nemesis(world: GfsWorld, until: float, *, master: bool = False,
                  period_s: float = 1.5) -> None:
    """Crash one chunkserver (and sometimes the master) at a time, restart it later."""
    sim = world.sim

    def strike() -> None:
        if sim.now >= until or not world.faults_on:
            return
        victims = list(world.chunkservers) + (["master"] if master else [])
        victim = sim.rng.choice(victims)
        sim.crash(victim)
        sim.after(sim.rng.uniform(0.3, 2.0), lambda: sim.restart(victim))
        sim.after(sim.rng.uniform(0.5, period_s * 2), strike)

    sim.after(sim.rng.uniform(0.2, period_s), strike)


def _ignore_exists(st: ClientState, path: str) -> Op:
    """Create ``path`` unless it exists, retrying while the master is unreachable (the
    workload needs the file; whether a retried create ran twice does not matter)."""
    for _ in range(40):
        try:
            yield from namespace_op(st, Create(path))
            return
        except Rejected:
            return
        except (IndefiniteError, Unavailable):
            yield Sleep(0.25)


def _append(st: ClientState, *, path: str, rec: bytes) -> Op:
    return record_append(st, path, rec)


def _create(st: ClientState, *, path: str) -> Op:
    return namespace_op(st, Create(path))


def _write(st: ClientState, *, path: str, offset: int, data: bytes) -> Op:
    return write(st, path, offset, data)


def make_record(client: int, seq: int, size: int) -> bytes:
    head = f"<{client}:{seq}:".encode()
    body = bytes((client * 31 + seq * 7 + i) % 251 for i in range(max(0, size - len(head) - 1)))
    return head + body + b">"


def append_scenario(seed: int, *, clients: int = 3, appends: int = 12,
                    crash_master: bool = False, faults: bool = True,
                    opts: SimOptions | None = None,
                    trace: TraceWriter | None = None) -> ScenarioResult:
    world = GfsWorld(seed, opts, trace)
    rng = world.sim.rng
    path = "/logs/app.log"
    records: dict[tuple[int, int], bytes] = {}
    max_rec = world.opts.chunk_size // 4
    for c in range(clients):
        work: list[WorkItem] = [("create", lambda st: _ignore_exists(st, path))]
        for i in range(appends):
            rec = make_record(c, i, rng.randint(16, max_rec))
            records[(c, i)] = rec
            work.append((f"append:{c}:{i}", partial(_append, path=path, rec=rec)))
        work.append((f"create:/dirs/c{c}", partial(_create, path=f"/dirs/c{c}")))
        world.add_client(f"client-{c}", work, start_at=0.5 + 0.1 * c)
    if faults:
        crash_nemesis(world, until=8.0, master=crash_master)
    world.sim.run_for(40.0, stop=world.clients_done)
    world.settle()
    problems = check_appends(world, path, records)
    problems += check_namespace(world)
    acked = sum(1 for r in world.results if r[2] == "ok")
    failed = sum(1 for r in world.results if r[2] != "ok")
    return ScenarioResult(seed, not problems, problems, acked, failed,
                          {"events": world.sim.stats.events,
                           "probes": dict(world.sim.stats.probes)})


def check_appends(world: GfsWorld, path: str, records: dict[tuple[int, int], bytes],
                  before: float | None = None) -> list[str]:
    """Every acknowledged record (acknowledged before ``before``, if given) is whole at
    its offset on every up-to-date replica of ``path``."""
    problems = []
    cs = world.opts.chunk_size
    chunks = world.file_replicas(path)
    for client, op, outcome, value in world.results:
        if not op.startswith("append:") or outcome != "ok":
            continue
        if before is not None and world.finished[(client, op)] >= before:
            continue
        _, c, i = op.split(":")
        rec = records[(int(c), int(i))]
        index, off = divmod(value, cs)
        if index >= len(chunks) or not chunks[index]:
            problems.append(f"{op}: acked at {value} but chunk {index} has no live replica")
            continue
        for server, data in chunks[index].items():
            if data[off:off + len(rec)] != rec:
                problems.append(f"{op}: acked at {value}, replica on {server} differs")
    return problems


def snapshot_scenario(seed: int, *, clients: int = 2, appends: int = 15, snapshots: int = 4,
                      crash_master: bool = False, opts: SimOptions | None = None,
                      trace: TraceWriter | None = None) -> ScenarioResult:
    """Appenders write one file while another client snapshots its directory again and
    again under chunkserver crashes (§3.4): every record acknowledged before a snapshot
    started is in that snapshot, whole at its offset; the original keeps every
    acknowledged record (copy-on-write never loses one)."""
    world = GfsWorld(seed, opts, trace)
    rng = world.sim.rng
    path = "/logs/app.log"
    records: dict[tuple[int, int], bytes] = {}
    for c in range(clients):
        work: list[WorkItem] = [("create", partial(_create_if_absent, path=path))]
        for i in range(appends):
            rec = make_record(c, i, rng.randint(16, world.opts.chunk_size // 4))
            records[(c, i)] = rec
            work.append((f"append:{c}:{i}", partial(_append, path=path, rec=rec)))
        world.add_client(f"client-{c}", work, start_at=0.5 + 0.1 * c)
    snaps: list[WorkItem] = [(f"snap:{i}", partial(_snapshot, src="/logs", dst=f"/snap{i}"))
                             for i in range(snapshots)]
    world.add_client("snapper", snaps, start_at=1.0, think_s=0.6)
    crash_nemesis(world, until=8.0, master=crash_master)
    world.sim.run_for(40.0, stop=world.clients_done)
    world.settle()
    problems = check_appends(world, path, records)
    for client, op, outcome, _ in list(world.results):
        if client == "snapper" and outcome == "ok":
            dst = f"/snap{op.split(':')[1]}/app.log"
            problems += [f"{dst}: {p}" for p in check_appends(
                world, dst, records, before=world.started[(client, op)])]
            problems += check_not_in_snapshot(world, dst, records,
                                              after=world.finished[(client, op)])
    acked = sum(1 for r in world.results if r[2] == "ok")
    return ScenarioResult(seed, not problems, problems, acked, len(world.results) - acked,
                          {"events": world.sim.stats.events,
                           "snapshots": sum(1 for r in world.results
                                            if r[0] == "snapper" and r[2] == "ok")})


def check_not_in_snapshot(world: GfsWorld, snap: str, records: dict[tuple[int, int], bytes],
                          after: float) -> list[str]:
    """Copy-on-write: no record appended to the original after the snapshot finished
    shows up in the snapshot's chunks (they are shared only until the first write)."""
    problems = []
    cs = world.opts.chunk_size
    chunks = world.file_replicas(snap)
    for client, op, outcome, value in world.results:
        if not op.startswith("append:") or outcome != "ok" or \
                world.started[(client, op)] < after:
            continue
        _, c, i = op.split(":")
        rec = records[(int(c), int(i))]
        index, off = divmod(value, cs)
        for server, data in (chunks[index] if index < len(chunks) else {}).items():
            if data[off:off + len(rec)] == rec:
                problems.append(f"{snap}: {op} (after the snapshot) is in it on {server}")
    return problems


def _snapshot(st: ClientState, *, src: str, dst: str) -> Op:
    return namespace_op(st, Snapshot(src, dst))


def _create_if_absent(st: ClientState, *, path: str) -> Op:
    return _ignore_exists(st, path)


def check_namespace(world: GfsWorld) -> list[str]:
    """Acknowledged creates survive; the shadow's namespace matches the master's."""
    m = world.master()
    problems = []
    for _client, op, outcome, _value in world.results:
        if op.startswith("create:/") and outcome == "ok":
            p = op.split(":", 1)[1]
            if p not in m.log.md.ns.files:
                problems.append(f"acknowledged create of {p} lost")
    for s in world.shadows:
        shadow = world.sim.process(s)
        if isinstance(shadow, ShadowCore) and shadow.log.applied == m.log.applied and \
                shadow.log.md.ns.files != m.log.md.ns.files:
            problems.append(f"{s} namespace differs from the master's at the same log position")
    return problems


def serial_write_scenario(seed: int, *, writes: int = 15, opts: SimOptions | None = None,
                          crash_master: bool = False,
                          trace: TraceWriter | None = None) -> ScenarioResult:
    """One writer, serial writes at offsets (extending and overwriting)."""
    world = GfsWorld(seed, opts, trace)
    rng = world.sim.rng
    path = "/data/serial"
    cs = world.opts.chunk_size
    plan: list[tuple[int, bytes]] = []
    size = 0
    for i in range(writes):
        n = rng.randint(1, cs + cs // 2)
        offset = rng.randint(0, size)
        data = bytes((i * 13 + j) % 256 for j in range(n))
        plan.append((offset, data))
        size = max(size, offset + n)
    work: list[WorkItem] = [("create", lambda st: namespace_op(st, Create(path)))]
    for i, (offset, data) in enumerate(plan):
        work.append((f"write:{i}", partial(_write, path=path, offset=offset, data=data)))
    work.append(("read", lambda st: read(st, path, 0, 1 << 30)))
    world.add_client("writer", work, start_at=0.5)
    crash_nemesis(world, until=8.0, master=crash_master)
    world.sim.run_for(60.0, stop=world.clients_done)
    world.settle()
    problems = check_defined(world, path, plan)
    acked = sum(1 for r in world.results if r[2] == "ok")
    return ScenarioResult(seed, not problems, problems, acked, len(world.results) - acked,
                          {"events": world.sim.stats.events})


def check_defined(world: GfsWorld, path: str, plan: list[tuple[int, bytes]]) -> list[str]:
    """Bytes last written by a successful serial write (and by no failed write since)
    are identical on every up-to-date replica and equal what was written (§2.7.1)."""
    outcome = {op: oc for _c, op, oc, _v in world.results}
    if outcome.get("create") != "ok":
        return []
    expected: dict[int, int] = {}
    for i, (offset, data) in enumerate(plan):
        ok = outcome.get(f"write:{i}") == "ok"
        for j, b in enumerate(data):
            if ok:
                expected[offset + j] = b
            else:
                expected.pop(offset + j, None)
    if not any(outcome.get(f"write:{i}") == "ok" for i in range(len(plan))):
        return []
    cs = world.opts.chunk_size
    chunks = world.file_replicas(path)
    problems = []
    for pos, b in sorted(expected.items()):
        index, off = divmod(pos, cs)
        replicas = chunks[index] if index < len(chunks) else {}
        if not replicas:
            problems.append(f"byte {pos}: chunk {index} has no live replica")
            break
        bad = [s for s, data in replicas.items() if off >= len(data) or data[off] != b]
        if bad:
            problems.append(f"byte {pos}: replicas {bad} differ from the defined value")
            break
    return problems


Scenario = Callable[..., ScenarioResult]
