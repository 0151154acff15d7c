"""``CoreNet``: a hand-driven network of ``RaftCore``s for paper-claim unit tests.

No simulator clock, no randomness in delivery: a test ticks nodes, delivers queued
messages in FIFO order (or drops them), crashes and restarts nodes from what they
persisted, and then inspects core state. Every message goes through the codec, as on
a real wire. Also handy for exploring the protocol in a REPL.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

from giants.core.consensus import ConsensusConfig
from giants.core.envelope import Envelope, decode_envelope, encode_envelope
from giants.core.process import Durable, Io
from giants.raft._core import LEADER, RaftCore

__all__ = ["CoreNet"]


class CoreNet:
    def __init__(self, n: int = 3, *, options: dict[str, Any] | None = None, seed: int = 0,
                 learners: int = 0) -> None:
        self.ids = [f"n{i}" for i in range(n)]
        self.learner_ids = [f"l{i}" for i in range(learners)]
        self.peers = {x: x for x in self.ids}
        self.options = dict(options or {})
        self.rng = random.Random(seed)
        self.durable: dict[str, Durable] = {}
        self.cores: dict[str, RaftCore | None] = {}
        self.queue: list[Envelope] = []
        self.blocked: set[tuple[str, str]] = set()
        self.persisted: list[tuple[str, Any]] = []
        self._ids = 0
        for node in self.ids:
            self.durable[node] = Durable()
            self._boot(node, join=False)
        for node in self.learner_ids:
            self.durable[node] = Durable()
            self._boot(node, join=True)

    # -- running cores ----------------------------------------------------------------

    def core(self, node: str) -> RaftCore:
        core = self.cores[node]
        assert core is not None, f"{node} is down"
        return core

    def _boot(self, node: str, *, join: bool) -> None:
        config = ConsensusConfig(node, {} if join else self.peers, join=join,
                                 options=self.options)
        core = RaftCore(config, self.durable[node].copy())
        self.cores[node] = core
        self.run(node, core.start)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def run(self, node: str, fn: Callable[[Io], Any]) -> Io:
        """Call ``fn(io)`` on ``node``'s behalf; persist its writes, queue its sends."""
        io = Io(node_id=node, now=0.0, rng=self.rng, next_msg_id=self._next_id)
        fn(io)
        for op in io.persists:
            self.durable[node].apply(op)
            self.persisted.append((node, op))
        for env in io.sends:
            self.queue.append(decode_envelope(encode_envelope(env)))
        return io

    def tick(self, node: str, n: int = 1) -> None:
        for _ in range(n):
            self.run(node, self.core(node).tick)

    def send_raw(self, env: Envelope) -> Io:
        """Deliver ``env`` now (after a codec round trip), bypassing the queue."""
        env = decode_envelope(encode_envelope(env))
        return self.run(env.target, lambda io: self.core(env.target).receive(io, env))

    def deliver(self, max_messages: int = 100_000,
                drop: Callable[[Envelope], bool] | None = None) -> int:
        """Deliver queued messages (and what they cause) FIFO until none is left."""
        count = 0
        while self.queue and count < max_messages:
            env = self.queue.pop(0)
            count += 1
            if (env.source, env.target) in self.blocked or (drop is not None and drop(env)):
                continue
            core = self.cores.get(env.target)
            if core is None:
                continue
            self.run(env.target, partial(core.receive, env=env))
        return count

    def take(self, node: str) -> list[Envelope]:
        """Remove and return the queued messages from ``node``."""
        mine = [e for e in self.queue if e.source == node]
        self.queue = [e for e in self.queue if e.source != node]
        return mine

    # -- scenarios --------------------------------------------------------------------

    def age(self) -> None:
        """Let an election timeout pass for every live follower without news of a
        leader (so none of them ignores vote requests as a live leader's follower)."""
        for core in self.cores.values():
            if core is not None and core.role != LEADER:
                core._election_elapsed = max(core._election_elapsed, core.opts.election_ticks)

    def elect(self, node: str, max_ticks: int = 200) -> None:
        """Age every follower, tick ``node`` until it campaigns, deliver everything."""
        for _ in range(max_ticks):
            self.age()
            self.tick(node)
            self.deliver()
            if self.core(node).role == LEADER:
                return
        raise AssertionError(f"{node} is {self.core(node).role} after {max_ticks} ticks")

    def propose(self, node: str, command: bytes) -> None:
        self.run(node, lambda io: self.core(node).propose(io, command))

    def crash(self, node: str) -> None:
        self.cores[node] = None
        self.queue = [e for e in self.queue if e.target != node]

    def restart(self, node: str) -> None:
        self._boot(node, join=node in self.learner_ids)

    def partition(self, group: list[str]) -> None:
        everyone = self.ids + self.learner_ids
        for a in group:
            for b in everyone:
                if b not in group:
                    self.blocked.add((a, b))
                    self.blocked.add((b, a))

    def heal(self) -> None:
        self.blocked.clear()

    def leaders(self) -> list[str]:
        return [n for n, c in self.cores.items() if c is not None and c.role == LEADER]
