"""Seeded simulations of a Chubby cell under a nemesis, and the checkers of the paper's
guarantees -- what ``giants sim chubby`` and the sweeps run (Burrows, OSDI 2006, §2.4,
§2.8, §2.9, §2.12).

A run: ``replicas`` ``ChubbyReplica``s over the chosen consensus core, and ``clients``
simulated clients (``ClientCore`` hosted by ``SimClient``) that open a few files and one
lock file, then read (mostly from their caches), write, acquire (blocking or try) and
release the lock, and check their sequencer at the cell before "using" the lock, while
the nemesis crashes, isolates and partitions *replicas* (the master first among them)
and disturbs the network. Many blocking acquires are impatient, as a lock-service user
with a timeout is: the client either stops waiting (``abandon``, what a cancelled
``acquire(timeout_s=...)`` does) or gives the call a short deadline (``Timeout``), and
then at once asks again on the same handle. When the workload stops, holders release.
Then everything heals and the run settles. Checked:

* **sessions survive fail-over**: no client session expires (every fault ends well
  inside the grace period);
* **at most one exclusive holder** at every simulation step: of the clients holding a
  sequencer for the lock, at most one is ``safe`` with a valid local lease, and the
  lock generations handed out strictly increase;
* **sequencers**: a sequencer the cell accepts is the newest one handed out;
* **linearizable file operations** (reads, cached or not, and writes per file);
* **no stale cached read**: no read invoked after a write was acknowledged returns the
  value of a write acknowledged before that write was invoked;
* all replicas end with the same database;
* **liveness of the lock**: at the end every call was answered and the lock is free
  (an acquire that was given up on and then won behind its session's back, or a
  session waiting behind its own handle, would leave it held).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from giants.chubby._master import CellOptions, ChubbyReplica
from giants.chubby._session import ClientCore, ClientOptions
from giants.core.consensus import ConsensusConfig, ConsensusFactory
from giants.core.envelope import Envelope
from giants.core.errors import DefiniteError, GiantsError, Timeout
from giants.core.process import Durable, Io
from giants.core.sim import SimNetworkOptions, Simulation
from giants.core.testing.history import History
from giants.core.testing.linearizability import check_kv_linearizable
from giants.core.testing.nemesis import Nemesis
from giants.core.trace import TraceWriter

__all__ = ["SimWorld", "SimClient", "SimCell", "ScriptedClient", "run_chubby_sim", "check_run",
           "run_sim_cli",
           "NEMESIS_KINDS"]

REPLICA_TICK_S = 0.02
CLIENT_TICK_S = 0.02
NEMESIS_KINDS = ("crash", "isolate", "partition", "loss", "duplicate", "reorder", "clog")
SIM_CELL = CellOptions(lease_s=1.0, keepalive_margin_s=0.25, lock_delay_s=0.5)
SIM_CLIENT = ClientOptions(grace_s=6.0, attempt_s=0.3, op_timeout_s=4.0, resend_before_s=0.15)
FILES = ("/ls/cell/f0", "/ls/cell/f1")
# After the workload stops and faults heal: time for every session to be safe again.
SETTLE_S = 3.0
LOCK = "/ls/cell/lock"


@dataclass
class SimWorld:
    """What the clients share with the checkers."""

    history: History = field(default_factory=History)
    holders: dict[str, list[Any]] = field(default_factory=dict)   # client -> sequencer
    generations: list[int] = field(default_factory=list)
    checked: list[tuple[int, bool]] = field(default_factory=list)
    acked_writes: dict[str, list[tuple[float, float, int]]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    next_value: int = 0
    stop_at: float = 0.0
    impatient: Counter[str] = field(default_factory=Counter)   # what impatient acquires did


class SimClient:
    """A ``Process`` hosting a ``ClientCore`` plus a random workload (module doc)."""

    def __init__(self, name: str, replicas: list[str], world: SimWorld,
                 options: ClientOptions = SIM_CLIENT) -> None:
        self.name = name
        self.world = world
        self.core = ClientCore(replicas, user=name, nonce=name, options=options)
        self.tokens: dict[int, int] = {}
        self.setup: list[tuple[str, list[Any]]] = [
            ("open", [p, "rw", "file", ["modified"], None]) for p in FILES
        ] + [("open", [LOCK, "l", "file", ["lock"], None])]
        self.handles: dict[str, int] = {}
        self.current: tuple[int, str, list[Any], int | None, str] | None = None
        self.incarnation = 0
        self.sequencer: list[Any] | None = None
        self.give_up_at: float | None = None     # abandon the current acquire then
        self.ask_again = False                   # re-acquire at once after a Timeout

    # -- Process ----------------------------------------------------------------------

    def start(self, io: Io) -> None:
        self.core.start(io.now)
        self._flush(io)

    def receive(self, io: Io, env: Envelope) -> None:
        token = self.tokens.pop(env.in_reply_to or -1, None)
        if token is not None:
            self.core.on_reply(io.now, token, env.body)
        self._flush(io)

    def tick(self, io: Io) -> None:
        self.core.tick(io.now)
        self._flush(io)

    # -- workload ---------------------------------------------------------------------

    def _flush(self, io: Io) -> None:
        for _ in range(8):      # cache hits complete at once: a few rounds per call
            done = self.core.take_completed()
            for op_id, err, value in done:
                self._completed(io, op_id, err, value)
            if (self.current is not None and self.give_up_at is not None
                    and io.now >= self.give_up_at):
                self._abandon_and_ask_again(io)
            for ev in self.core.take_events():
                if ev[0] in ("jeopardy", "safe", "expired", "failover"):
                    io.trace("session_" + ev[0], lease_end=round(self.core.lease_end, 3),
                             grace_end=round(self.core.grace_end, 3))
                if ev[0] == "expired":
                    self.world.expired.append(f"{self.name}@{io.now:.2f}")
                    self.world.holders.pop(self.name, None)
            if self.current is None and self.core.state == "safe":
                self._next(io)
            if not done:
                break
        for token, target, body, _timeout in self.core.take_outbox():
            self.tokens[io.send(target, body)] = token

    def _process(self) -> str:
        return f"{self.name}#{self.incarnation}"

    def _next(self, io: Io) -> None:
        if self.setup:
            op, args = self.setup[0]
            self._submit(io, op, args, None, "")
            return
        if io.now >= self.world.stop_at:
            if self.sequencer is not None:      # let go, so the lock ends up free
                self.world.holders.pop(self.name, None)
                self.sequencer = None
                self._submit(io, "release", [self.handles[LOCK]], None, "")
            return
        r = io.rng.random()
        path = FILES[io.rng.randint(0, len(FILES) - 1)]
        if r < 0.45:
            hist = self.world.history.invoke(self._process(), "read", key=path, time=io.now)
            self._submit(io, "read", [self.handles[path]], hist, path)
        elif r < 0.7:
            self.world.next_value += 1
            v = self.world.next_value
            hist = self.world.history.invoke(self._process(), "write", v, key=path, time=io.now)
            self._submit(io, "write", [self.handles[path], str(v).encode(), -1], hist, path)
        elif self.sequencer is not None:
            if io.rng.random() < 0.5:
                self._submit(io, "check_sequencer", [self.sequencer], None, "")
            else:
                self.world.holders.pop(self.name, None)
                self.sequencer = None
                self._submit(io, "release", [self.handles[LOCK]], None, "")
        else:
            self._acquire(io)

    def _acquire(self, io: Io) -> None:
        """A blocking acquire (half of them impatient: abandoned after a while, or
        with a short deadline) or a try_acquire."""
        args = [self.handles[LOCK], "x"]
        r = io.rng.random()
        if r < 0.3:
            self._submit(io, "try_acquire", args, None, "")
        elif r < 0.5:
            self._submit(io, "acquire", args, None, "")
        elif r < 0.75:
            self._submit(io, "acquire", args, None, "")
            self.give_up_at = io.now + io.rng.uniform(0.02, 0.6)
        else:
            self.ask_again = True
            self._submit(io, "acquire", args, None, "", timeout_s=io.rng.uniform(0.02, 0.6))

    def _abandon_and_ask_again(self, io: Io) -> None:
        assert self.current is not None
        self.core.abandon(io.now, self.current[0])
        self.world.impatient["abandoned"] += 1
        self.current = self.give_up_at = None
        if io.now < self.world.stop_at:
            self.world.impatient["asked_again"] += 1
            self._acquire(io)

    def _submit(self, io: Io, op: str, args: list[Any], hist: int | None, path: str,
                timeout_s: float | None = None) -> None:
        op_id = self.core.submit(io.now, op, args, timeout_s)
        self.current = (op_id, op, args, hist, path)

    def _completed(self, io: Io, op_id: int, err: GiantsError | None, value: Any) -> None:
        assert self.current is not None and self.current[0] == op_id
        _, op, args, hist, path = self.current
        impatient = self.ask_again or self.give_up_at is not None
        ask_again, self.ask_again = self.ask_again, False
        self.current = self.give_up_at = None
        w = self.world
        if op == "open" and self.setup:
            if err is None:
                self.setup.pop(0)
                self.handles[args[0]] = value[0]
            return
        if hist is not None:
            self._record(io, op, hist, path, err, value)
            return
        if err is not None:
            if ask_again and isinstance(err, Timeout):
                w.impatient["timed_out"] += 1
                if io.now < w.stop_at:
                    w.impatient["asked_again"] += 1
                    self._acquire(io)
            return
        if op in ("acquire", "try_acquire") and value[0]:
            if impatient:
                w.impatient["won"] += 1
            gen = value[1][2]
            if w.generations and gen <= w.generations[-1]:
                w.violations.append(f"lock generation {gen} after {w.generations[-1]}")
            w.generations.append(gen)
            self.sequencer = value[1]
            w.holders[self.name] = value[1]
        elif op == "check_sequencer":
            newest = w.generations[-1] if w.generations else -1
            if value and args[0][2] != newest:
                w.violations.append(f"stale sequencer {args[0]} accepted (newest {newest})")
            if not value:
                w.holders.pop(self.name, None)
                self.sequencer = None

    def _record(self, io: Io, op: str, hist: int, path: str, err: GiantsError | None,
                value: Any) -> None:
        w = self.world
        if err is not None:
            if not isinstance(err, DefiniteError):
                self.incarnation += 1
            w.history.error(hist, err, time=io.now)
            return
        if op == "write":
            inv = w.history.events[hist]
            w.acked_writes.setdefault(path, []).append((inv.time or 0.0, io.now, inv.value))
            w.history.ok(hist, time=io.now)
            return
        got = int(value[0]) if value[0] else None
        inv_time = w.history.events[hist].time or 0.0
        self._check_not_stale(path, inv_time, got)
        w.history.ok(hist, got, time=io.now)

    def _check_not_stale(self, path: str, invoked: float, got: int | None) -> None:
        writes = self.world.acked_writes.get(path, [])
        newer = [w for w in writes if w[1] < invoked]
        if not newer:
            return
        latest_start = max(w[0] for w in newer)
        for _start, acked, v in writes:
            if v == got and acked < latest_start:
                self.world.violations.append(
                    f"stale read of {path}: got {got} (acked {acked:.3f}) although a write "
                    f"invoked at {latest_start:.3f} was acknowledged before {invoked:.3f}")
        if got is None:
            self.world.violations.append(f"read of {path} returned nothing after writes")


def _replica_factory(name: str, peers: dict[str, str], consensus: ConsensusFactory,
                     options: dict[str, Any], cell: CellOptions
                     ) -> Callable[[Durable], ChubbyReplica]:
    config = ConsensusConfig(node_id=name, peers=peers, options=options)
    return lambda durable: ChubbyReplica(consensus, config, durable, cell)


def _consensus(name: str) -> tuple[ConsensusFactory, dict[str, Any]]:
    if name == "raft":
        from giants.raft._core import raft_factory
        return raft_factory, {}
    if name == "paxos":
        from giants.paxos import paxos_factory
        return paxos_factory, {}
    raise ValueError(f"unknown consensus {name!r} (raft or paxos)")


@dataclass
class SimRun:
    sim: Simulation
    world: SimWorld
    clients: list[SimClient]
    replicas: list[str]
    nemesis: Nemesis | None


def master_of(sim: Simulation, replicas: list[str]) -> str | None:
    for r in replicas:
        p = sim.process(r)
        if isinstance(p, ChubbyReplica) and p.active:
            return r
    return None


def run_chubby_sim(seed: int, *, consensus: str = "raft", replicas: int = 5,
                   clients: int = 3, ops_s: float = 4.0, nemesis: tuple[str, ...] = NEMESIS_KINDS,
                   trace: TraceWriter | None = None, kill_master_at: float | None = 1.5,
                   cell: CellOptions = SIM_CELL,
                   schedule: Callable[[Simulation, list[str]], None] | None = None) -> SimRun:
    """One seeded run (module docstring). ``schedule(sim, replicas)`` may add faults."""
    factory, options = _consensus(consensus)
    sim = Simulation(seed, SimNetworkOptions(), trace=trace)
    names = [f"chubby-{i}" for i in range(replicas)]
    peers = {n: n for n in names}
    for n in names:
        sim.add_process(n, _replica_factory(n, peers, factory, options, cell),
                        tick_s=REPLICA_TICK_S)
    world = SimWorld(stop_at=1.0 + ops_s)
    simclients = [SimClient(f"client-{i}", names, world) for i in range(clients)]
    for c in simclients:
        sim.add_process(c.name, _constant(c), tick_s=CLIENT_TICK_S)
    sim.after_event.append(lambda s: _check_holders(s, world, simclients))
    nem = None
    if kill_master_at is not None:
        def kill() -> None:
            m = master_of(sim, names)
            if m is not None:
                sim.crash(m)
                sim.after(1.0, lambda: sim.restart(m))
        sim.at(kill_master_at, kill)
    if schedule is not None:
        schedule(sim, names)
    if nemesis:
        nem = Nemesis(sim, names, nemesis, interval_s=(0.5, 1.5), fault_s=(0.2, 1.2),
                      leader_fn=lambda: master_of(sim, names), max_down=2)
        sim.at(kill_master_at + 0.5 if kill_master_at else 1.0,
               lambda: nem.start(world.stop_at))
    sim.run_until(world.stop_at + SETTLE_S)
    return SimRun(sim, world, simclients, names, nem)


def quorum_outage(at_s: float, outage_s: float) -> Callable[[Simulation, list[str]], None]:
    """A schedule: at ``at_s`` crash the master and two more replicas (no quorum, no
    master) for ``outage_s``, longer than a lease: clients go into jeopardy and must
    come through within their grace period."""
    def schedule(sim: Simulation, names: list[str]) -> None:
        def crash() -> None:
            m = master_of(sim, names) or names[0]
            victims = [m, *[n for n in names if n != m][:2]]
            for v in victims:
                sim.crash(v)
            def restart() -> None:
                for v in victims:
                    sim.restart(v)
            sim.after(outage_s, restart)
        sim.at(at_s, crash)
    return schedule


def _constant(process: Any) -> Callable[[Durable], Any]:
    """A factory that hands back the same client object (clients never crash here)."""
    return lambda _durable: process


def _check_holders(sim: Simulation, world: SimWorld, clients: list[SimClient]) -> None:
    if len(world.holders) < 2:
        return
    live = [c.name for c in clients if c.name in world.holders and c.core.state == "safe"
            and c.core.lease_end > sim.now]
    if len(live) > 1:
        world.violations.append(f"two exclusive holders at {sim.now:.3f}: {live}")


def check_run(run: SimRun) -> list[str]:
    """Every violation of the module docstring's guarantees (empty: all held)."""
    problems = list(dict.fromkeys(run.world.violations))[:5]
    if run.world.expired:
        problems.append(f"sessions expired: {run.world.expired}")
    for c in run.clients:
        if c.core.state != "safe":
            problems.append(f"{c.name} ended {c.core.state}")
        if c.setup:
            problems.append(f"{c.name} never finished opening its files")
        if c.current is not None or c.core.queued():
            problems.append(f"{c.name} ended with calls unanswered: {c.current} "
                            f"({c.core.queued()} queued)")
    lin = check_kv_linearizable(run.world.history)
    if not lin:
        problems.append(f"not linearizable: {lin.explain()}")
    snaps = []
    for r in run.replicas:
        p = run.sim.process(r)
        if isinstance(p, ChubbyReplica):
            snap = p.db.snapshot()
            snaps.append((p.applier.applied_index, snap["nodes"], snap["counters"]))
    top = max(a for a, _, _ in snaps)
    if len({repr(s[1:]) for s in snaps if s[0] == top}) > 1:
        problems.append("replicas at the same index disagree")
    lock = next(s[1].get(LOCK) for s in snaps if s[0] == top)
    if lock is not None and (lock[9] or lock[10]):
        problems.append(f"the lock is still held at the end (handles {lock[9]} {lock[10]}) "
                        f"though every holder let go")
    return problems


def run_sim_cli(args: Any) -> int:
    seed = int(getattr(args, "seed", 0) or 0)
    consensus = str(getattr(args, "consensus", None) or "raft")
    kinds = tuple(k for k in (getattr(args, "nemesis", None) or ",".join(NEMESIS_KINDS)
                              ).split(",") if k and k != "none")
    ops = getattr(args, "ops", None)
    path = os.path.abspath(f"chubby-sim-{consensus}-{seed}.trace.jsonl")
    trace = TraceWriter()
    run = run_chubby_sim(seed, consensus=consensus, nemesis=kinds, trace=trace,
                         ops_s=float(ops) / 20 if ops else 4.0)
    trace.save(path)
    problems = check_run(run)
    ops_done = len(run.world.history.operations())
    hits = sum(c.core.stats["cache_hits"] for c in run.clients)
    print(f"chubby sim seed={seed} consensus={consensus} nemesis={','.join(kinds) or 'none'}: "
          f"{ops_done} file ops ({hits} cache hits), {len(run.world.generations)} lock "
          f"acquisitions, impatient acquires {dict(sorted(run.world.impatient.items()))}, "
          f"faults: {run.nemesis.injected if run.nemesis else []}")
    print(f"trace: {path}")
    if problems:
        print("verdict: FAIL")
        for p in problems:
            print("  -", p)
        return 1
    print("verdict: PASS (sessions survived, one holder, linearizable, no stale cache)")
    return 0


class ScriptedClient:
    """A ``Process`` hosting a bare ``ClientCore``: the test calls it (``SimCell.call``)."""

    def __init__(self, name: str, replicas: list[str], options: ClientOptions,
                 adopt: tuple[int, int] | None = None) -> None:
        self.name = name
        self.core = ClientCore(replicas, user=name, nonce=name, options=options, adopt=adopt)
        self.tokens: dict[int, int] = {}
        self.done: dict[int, tuple[GiantsError | None, Any]] = {}
        self.events: list[list[Any]] = []

    def start(self, io: Io) -> None:
        self.core.start(io.now)
        self.flush(io)

    def receive(self, io: Io, env: Envelope) -> None:
        token = self.tokens.pop(env.in_reply_to or -1, None)
        if token is not None:
            self.core.on_reply(io.now, token, env.body)
        self.flush(io)

    def tick(self, io: Io) -> None:
        self.core.tick(io.now)
        self.flush(io)

    def flush(self, io: Io) -> None:
        for op_id, err, value in self.core.take_completed():
            self.done[op_id] = (err, value)
        self.events.extend(self.core.take_events())
        for token, target, body, _timeout in self.core.take_outbox():
            self.tokens[io.send(target, body)] = token


class SimCell:
    """A small cell and scripted clients in the simulator, for paper-claim tests."""

    def __init__(self, seed: int = 0, *, consensus: str = "raft", replicas: int = 3,
                 clients: tuple[str, ...] = ("alice", "bob"), cell: CellOptions = SIM_CELL,
                 client_options: ClientOptions = SIM_CLIENT) -> None:
        factory, options = _consensus(consensus)
        self.sim = Simulation(seed)
        self.replicas = [f"chubby-{i}" for i in range(replicas)]
        peers = {n: n for n in self.replicas}
        for n in self.replicas:
            self.sim.add_process(n, _replica_factory(n, peers, factory, options, cell),
                                 tick_s=REPLICA_TICK_S)
        self.clients: dict[str, ScriptedClient] = {}
        for name in clients:
            self.add_client(name, client_options)

    def add_client(self, name: str, options: ClientOptions = SIM_CLIENT,
                   adopt: tuple[int, int] | None = None) -> ScriptedClient:
        """``adopt=(session, epoch)``: take over that live session (``ClientCore``)."""
        c = ScriptedClient(name, self.replicas, options, adopt)
        self.clients[name] = c
        self.sim.add_process(name, _constant(c), tick_s=CLIENT_TICK_S)
        return c

    def wait_safe(self, *names: str, timeout_s: float = 10.0) -> None:
        targets = [self.clients[n] for n in (names or tuple(self.clients))]
        self.sim.run_for(timeout_s, stop=lambda: all(c.core.state == "safe" for c in targets))
        assert all(c.core.state == "safe" for c in targets), [c.core.state for c in targets]

    def start(self, name: str, op: str, args: list[Any]) -> int:
        box: list[int] = []

        def submit(process: Any, io: Io) -> None:
            box.append(process.core.submit(io.now, op, args))
            process.flush(io)

        self.sim.invoke(name, submit)
        return box[0]

    def result(self, name: str, op_id: int, timeout_s: float = 10.0) -> Any:
        c = self.clients[name]
        self.sim.run_for(timeout_s, stop=lambda: op_id in c.done)
        assert op_id in c.done, f"{name}: call {op_id} not answered within {timeout_s}s"
        err, value = c.done.pop(op_id)
        if err is not None:
            raise err
        return value

    def call(self, name: str, op: str, *args: Any, timeout_s: float = 10.0) -> Any:
        return self.result(name, self.start(name, op, list(args)), timeout_s)

    def master(self) -> ChubbyReplica:
        m = master_of(self.sim, self.replicas)
        assert m is not None
        p = self.sim.process(m)
        assert isinstance(p, ChubbyReplica)
        return p
