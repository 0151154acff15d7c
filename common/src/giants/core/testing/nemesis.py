"""The nemesis: scheduled, seeded faults for simulations (Jepsen's term).

``Nemesis(sim, nodes, kinds)`` injects one fault at a time at random intervals until
``stop_at``, then heals everything (``heal_all``): partitions removed, crashed nodes
restarted, network options restored, clocks reset. Kinds:

``partition``  random two-way split of the nodes
``isolate``    cut one node off (the current leader when ``leader_fn`` is given)
``oneway``     block a random directed link
``crash``      crash a random node, restart it a little later (losing what it did
               not persist)
``loss``       drop 20% of messages for a while
``duplicate``  duplicate 20% of messages for a while
``reorder``    hold back 20% of messages for a while
``clog``       slow one link down
``skew``       make one node's clock drift and jump forward
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from giants.core.sim import Simulation

__all__ = ["Nemesis", "ALL_KINDS"]

ALL_KINDS = ("partition", "isolate", "oneway", "crash", "loss", "duplicate", "reorder",
             "clog", "skew")


class Nemesis:
    def __init__(
        self,
        sim: Simulation,
        nodes: Sequence[str],
        kinds: Sequence[str] = ALL_KINDS,
        *,
        interval_s: tuple[float, float] = (0.3, 1.5),
        fault_s: tuple[float, float] = (0.3, 2.0),
        leader_fn: Callable[[], str | None] | None = None,
        max_down: int | None = None,
    ) -> None:
        unknown = set(kinds) - set(ALL_KINDS)
        assert not unknown, f"unknown nemesis kinds {unknown}"
        self.sim = sim
        self.nodes = list(nodes)
        self.kinds = list(kinds)
        self.interval_s = interval_s
        self.fault_s = fault_s
        self.leader_fn = leader_fn
        self.max_down = max_down if max_down is not None else len(self.nodes)
        self._base_network = replace(sim.network)
        self._stop_at = 0.0
        self.injected: list[str] = []

    def start(self, stop_at: float) -> None:
        """Inject faults from now until virtual time ``stop_at``, then heal."""
        self._stop_at = stop_at
        if self.kinds:
            self._schedule_next()
        self.sim.at(stop_at, self.heal_all)

    def heal_all(self) -> None:
        sim = self.sim
        sim.heal()
        sim.network = replace(self._base_network)
        for n in self.nodes:
            sim.set_clock(n, 1.0)
            if not sim.is_up(n):
                sim.restart(n)

    def _schedule_next(self) -> None:
        delay = self.sim.rng.uniform(*self.interval_s)
        if self.sim.now + delay < self._stop_at:
            self.sim.after(delay, self._inject)

    def _inject(self) -> None:
        sim, rng = self.sim, self.sim.rng
        if sim.now >= self._stop_at:
            return
        kind = rng.choice(self.kinds)
        self.injected.append(kind)
        duration = rng.uniform(*self.fault_s)
        nodes = self.nodes
        if kind == "partition":
            shuffled = list(nodes)
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(shuffled) - 1)
            sim.partition(shuffled[:cut], shuffled[cut:])
            sim.after(duration, sim.heal)
        elif kind == "isolate":
            victim = (self.leader_fn() if self.leader_fn else None) or rng.choice(nodes)
            sim.isolate(victim, nodes)
            sim.after(duration, sim.heal)
        elif kind == "oneway":
            a, b = rng.sample(nodes, 2)
            sim.block(a, b)
            sim.after(duration, lambda: sim.unblock(a, b))
        elif kind == "crash":
            down = [n for n in nodes if not sim.is_up(n)]
            if len(down) < self.max_down:
                victim = rng.choice([n for n in nodes if sim.is_up(n)])
                sim.crash(victim)
                sim.after(duration, lambda: sim.restart(victim))
        elif kind in ("loss", "duplicate", "reorder"):
            setattr(sim.network, kind, 0.2)
            sim.after(duration, lambda: setattr(sim.network, kind, getattr(self._base_network, kind)))
        elif kind == "clog":
            a, b = rng.sample(nodes, 2)
            sim.clog(a, b, rng.uniform(0.05, 0.3))
            sim.after(duration, sim.heal)
        elif kind == "skew":
            victim = rng.choice(nodes)
            sim.set_clock(victim, rng.uniform(0.9, 1.1), rng.uniform(0.0, 0.3))
            sim.after(duration, lambda: sim.set_clock(victim, 1.0))
        self._schedule_next()
