"""The deterministic discrete-event simulator (FoundationDB / TigerBeetle style).

It drives sans-I/O processes (``giants.core.process``) directly -- no trio, no threads,
no wall clock -- so one printed seed reproduces a run exactly, byte for byte in its
trace. Every message is msgpack-encoded at ``send`` and decoded at delivery, exactly as
on a real wire, so a message that would not survive the codec fails here too.

The network (``SimNetworkOptions``) delays each message uniformly in
``[min_delay_s, max_delay_s]`` (so messages reorder), loses, duplicates and, with
``reorder`` probability, holds one back by ``reorder_delay_s``. Named faults: directed
link blocking (``block`` for one-way links, ``partition`` for any shape of groups,
``isolate``), ``clog`` (extra delay on a link), ``crash`` (the process object is
dropped; what it persisted stays), ``restart`` (rebuilt by its factory from its
``Durable``), ``set_clock(node, rate, jump_s)`` (clock drift and forward jumps
seen by ``io.now``). ``buggify(site)`` answers True at a few enabled sites, only in simulation;
``probe(name)`` counts rare branches so sweeps can report what never fired.

Durable values go through msgpack as the real store keeps them (tuples come back as
lists), so a process cannot come to depend on something only the simulator preserves.

Simplifications: persistence is applied at the end of each process call, before that
call's messages leave, so a crash never loses acknowledged state but also never tears a
write (the storage layer's own tests cover torn files).
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from giants.core.codec import DEFAULT_REGISTRY, MessageRegistry
from giants.core.envelope import Envelope, decode_envelope, encode_envelope
from giants.core.errors import RemoteProtocolError
from giants.core.process import Durable, Io, Process, ProcessFactory, Put
from giants.core.storage import pack_value, unpack_value
from giants.core.trace import TraceWriter, summarize

__all__ = ["SimNetworkOptions", "Simulation", "SimNode"]

_DELIVER = 0
_TICK = 1
_CALL = 2

# A sweep that never ends is a bug report nobody reads; cap every run.
MAX_EVENTS_PER_RUN = 5_000_000


@dataclass
class SimNetworkOptions:
    """Seeded network behaviour. Probabilities are per message."""

    min_delay_s: float = 0.0005
    max_delay_s: float = 0.005
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay_s: float = 0.05


@dataclass
class SimNode:
    node_id: str
    factory: ProcessFactory
    tick_s: float
    durable: Durable
    rng: random.Random
    process: Process | None = None
    epoch: int = 0
    clock_offset_s: float = 0.0
    clock_rate: float = 1.0
    msg_seq: int = 0
    crashes: int = 0


@dataclass
class SimStats:
    events: int = 0
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    undecodable: int = 0
    probes: Counter[str] = field(default_factory=Counter)
    buggified: Counter[str] = field(default_factory=Counter)


class Simulation:
    """A seeded world of processes and a network. See the module docstring."""

    def __init__(
        self,
        seed: int,
        network: SimNetworkOptions | None = None,
        *,
        trace: TraceWriter | None = None,
        buggify: bool = False,
        buggify_fire_p: float = 0.05,
        registry: MessageRegistry = DEFAULT_REGISTRY,
    ) -> None:
        self.seed = seed
        self.network = network or SimNetworkOptions()
        self.trace = trace
        self.registry = registry
        self.now = 0.0
        self.stats = SimStats()
        self._rng = random.Random(f"giants-sim:{seed}")
        self._queue: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._nodes: dict[str, SimNode] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._clogged: dict[tuple[str, str], float] = {}
        self._buggify_on = buggify
        self._buggify_p = buggify_fire_p
        self._buggify_sites: dict[str, bool] = {}
        self.after_event: list[Callable[[Simulation], None]] = []

    # -- world building ---------------------------------------------------------------

    def add_process(
        self,
        node_id: str,
        factory: ProcessFactory,
        *,
        tick_s: float = 0.01,
        durable: Durable | None = None,
    ) -> None:
        """Add and start a process. ``factory(durable)`` builds it (also on restart)."""
        assert node_id not in self._nodes, f"duplicate node {node_id}"
        node = SimNode(node_id, factory, tick_s, durable or Durable(),
                       random.Random(f"giants-node:{self.seed}:{node_id}"))
        self._nodes[node_id] = node
        self._boot(node)

    def nodes(self) -> list[str]:
        return list(self._nodes)

    def process(self, node_id: str) -> Process | None:
        """The live process object (None while crashed). For invariant checks only."""
        return self._nodes[node_id].process

    def durable(self, node_id: str) -> Durable:
        """What ``node_id`` has persisted (a copy)."""
        return self._nodes[node_id].durable.copy()

    def is_up(self, node_id: str) -> bool:
        return self._nodes[node_id].process is not None

    @property
    def rng(self) -> random.Random:
        """The simulation's own seeded generator, for workloads and nemeses."""
        return self._rng

    # -- scheduling -------------------------------------------------------------------

    def _push(self, t: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, kind, payload))

    def at(self, t: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` at virtual time ``t`` (not before now)."""
        self._push(max(t, self.now), _CALL, fn)

    def after(self, delay_s: float, fn: Callable[[], None]) -> None:
        self._push(self.now + max(0.0, delay_s), _CALL, fn)

    def invoke(self, node_id: str, fn: Callable[[Process, Io], None]) -> None:
        """Call ``fn(process, io)`` on a live process now and carry out its effects,
        as if an input arrived. Used by test drivers to inject client operations."""
        node = self._nodes[node_id]
        if node.process is None:
            return
        io = self._io(node)
        fn(node.process, io)
        self._flush(node, io)

    # -- running ----------------------------------------------------------------------

    def step(self) -> bool:
        """Process one event. False when nothing is left to do."""
        if not self._queue:
            return False
        t, _, kind, payload = heapq.heappop(self._queue)
        self.now = t
        self.stats.events += 1
        if kind == _DELIVER:
            self._deliver(*payload)
        elif kind == _TICK:
            self._tick(*payload)
        else:
            payload()
        for hook in self.after_event:
            hook(self)
        return True

    def run_until(self, t: float, *, stop: Callable[[], bool] | None = None) -> None:
        """Run events up to virtual time ``t``, or until ``stop()`` is true."""
        budget = MAX_EVENTS_PER_RUN
        while self._queue and self._queue[0][0] <= t:
            if stop is not None and stop():
                return
            self.step()
            budget -= 1
            assert budget > 0, f"simulation seed {self.seed} exceeded {MAX_EVENTS_PER_RUN} events"
        if stop is None or not stop():
            self.now = max(self.now, t)

    def run_for(self, dt_s: float, *, stop: Callable[[], bool] | None = None) -> None:
        self.run_until(self.now + dt_s, stop=stop)

    # -- faults -----------------------------------------------------------------------

    def crash(self, node_id: str) -> None:
        """Drop the process; its un-persisted state is gone. Messages to it are lost."""
        node = self._nodes[node_id]
        if node.process is None:
            return
        node.process = None
        node.epoch += 1
        node.crashes += 1
        self._trace(node_id, "fault", what="crash")

    def restart(self, node_id: str) -> None:
        """Rebuild a crashed process from its durable state (no-op if it is up)."""
        node = self._nodes[node_id]
        if node.process is not None:
            return
        self._trace(node_id, "fault", what="restart")
        self._boot(node)

    def block(self, src: str, dst: str) -> None:
        """Drop every message from ``src`` to ``dst`` (a one-way link failure)."""
        self._blocked.add((src, dst))
        self._trace(src, "fault", what="block", dst=dst)

    def unblock(self, src: str, dst: str) -> None:
        self._blocked.discard((src, dst))

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between different groups (both ways). Nodes named in no group
        (clients, typically) keep reaching everyone."""
        sets = [list(g) for g in groups]
        for i, a in enumerate(sets):
            for j, b in enumerate(sets):
                if i != j:
                    for x in a:
                        for y in b:
                            self._blocked.add((x, y))
        self._trace("sim", "fault", what="partition", groups=sets)

    def isolate(self, node_id: str, among: Iterable[str] | None = None) -> None:
        """Cut ``node_id`` off from ``among`` (default: every other node)."""
        others = [n for n in (among or self._nodes) if n != node_id]
        self.partition([node_id], others)

    def clog(self, src: str, dst: str, extra_delay_s: float) -> None:
        self._clogged[(src, dst)] = extra_delay_s
        self._trace(src, "fault", what="clog", dst=dst, extra=extra_delay_s)

    def heal(self) -> None:
        """Remove every partition, block and clog."""
        self._blocked.clear()
        self._clogged.clear()
        self._trace("sim", "fault", what="heal")

    def set_clock(self, node_id: str, rate: float = 1.0, jump_s: float = 0.0) -> None:
        """Drift (``rate``: local seconds per real second) and a forward jump
        (``jump_s`` >= 0) of the clock ``node_id`` sees. Local clocks stay monotonic."""
        assert jump_s >= 0.0 and rate > 0.0, "simulated clocks never run backwards"
        node = self._nodes[node_id]
        local_now = self.now * node.clock_rate + node.clock_offset_s
        node.clock_rate = rate
        node.clock_offset_s = local_now + jump_s - self.now * rate
        self._trace(node_id, "fault", what="clock", rate=rate, jump=jump_s)

    def reachable(self, src: str, dst: str) -> bool:
        return (src, dst) not in self._blocked

    # -- internals --------------------------------------------------------------------

    def _boot(self, node: SimNode) -> None:
        node.process = node.factory(node.durable.copy())
        io = self._io(node)
        node.process.start(io)
        self._flush(node, io)
        phase = node.rng.uniform(0, node.tick_s)
        self._push(self.now + phase, _TICK, (node.node_id, node.epoch))

    def _io(self, node: SimNode) -> Io:
        def next_id() -> int:
            node.msg_seq += 1
            return node.msg_seq

        return Io(
            node_id=node.node_id,
            now=self.now * node.clock_rate + node.clock_offset_s,
            rng=node.rng,
            next_msg_id=next_id,
            buggify_fn=self._buggify if self._buggify_on else None,
            probe_fn=self._probe,
        )

    def _buggify(self, site: str) -> bool:
        enabled = self._buggify_sites.get(site)
        if enabled is None:
            enabled = self._rng.random() < 0.25
            self._buggify_sites[site] = enabled
        if enabled and self._rng.random() < self._buggify_p:
            self.stats.buggified[site] += 1
            return True
        return False

    def _probe(self, name: str) -> None:
        self.stats.probes[name] += 1

    def _flush(self, node: SimNode, io: Io) -> None:
        for op in io.persists:
            if isinstance(op, Put):
                # through msgpack, exactly as the SQL store keeps it (tuples come back as lists)
                op = Put(op.ns, op.key, unpack_value(pack_value(op.value, self.registry),
                                                     self.registry))
            node.durable.apply(op)
        if self.trace is not None:
            for ev in io.traces:
                self.trace.event(self.now, ev.node, "state", what=ev.kind, **ev.fields)
        for env in io.sends:
            self._send(env)

    def _send(self, env: Envelope) -> None:
        self.stats.sent += 1
        data = encode_envelope(env, self.registry)
        if self.trace is not None:
            self._trace(env.source, "send", src=env.source, dst=env.target, id=env.msg_id,
                        reply_to=env.in_reply_to, msg=type(env.body).__name__,
                        body=summarize(env.body))
        net = self.network
        rng = self._rng
        if env.target not in self._nodes or not self.reachable(env.source, env.target):
            self._drop(env, "unreachable")
            return
        if net.loss and rng.random() < net.loss:
            self._drop(env, "loss")
            return
        copies = 2 if net.duplicate and rng.random() < net.duplicate else 1
        for _ in range(copies):
            delay = rng.uniform(net.min_delay_s, net.max_delay_s)
            if net.reorder and rng.random() < net.reorder:
                delay += net.reorder_delay_s
            delay += self._clogged.get((env.source, env.target), 0.0)
            self._push(self.now + delay, _DELIVER, (env.source, env.target, data))

    def _drop(self, env: Envelope, why: str) -> None:
        self.stats.dropped += 1
        if self.trace is not None:
            self._trace(env.source, "drop", src=env.source, dst=env.target, id=env.msg_id, why=why)

    def _deliver(self, src: str, dst: str, data: bytes) -> None:
        node = self._nodes[dst]
        if node.process is None or not self.reachable(src, dst):
            self.stats.dropped += 1
            return
        try:
            env = decode_envelope(data, self.registry)
        except RemoteProtocolError as exc:
            self.stats.undecodable += 1
            self._trace(dst, "drop", src=src, why=f"undecodable: {exc}")
            return
        self.stats.delivered += 1
        if self.trace is not None:
            self._trace(dst, "recv", src=src, dst=dst, id=env.msg_id, reply_to=env.in_reply_to,
                        msg=type(env.body).__name__)
        io = self._io(node)
        node.process.receive(io, env)
        self._flush(node, io)

    def _tick(self, node_id: str, epoch: int) -> None:
        node = self._nodes[node_id]
        if node.process is None or node.epoch != epoch:
            return
        io = self._io(node)
        node.process.tick(io)
        self._flush(node, io)
        self._push(self.now + node.tick_s, _TICK, (node_id, epoch))

    def _trace(self, node: str, kind: str, **fields: Any) -> None:
        if self.trace is not None:
            self.trace.event(self.now, node, kind, **fields)
