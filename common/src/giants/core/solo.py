"""``solo``: the single-node consensus core.

The smallest correct ``ConsensusCore``: one voter, so a command is chosen as soon as it
is durable. It gives the core a runnable replicated service (``giants up kv``) before any
real consensus plugin is installed, and is the reference the conformance suite is first
proven on. It tolerates restarts (the log and snapshot are durable) but, having one
node, no crash while down: it is unavailable then. Membership changes are refused.

Durable layout: ``<ns>.log`` (index -> [term, command]), ``<ns>.snap``
(``"snap"`` -> [index, data]).
"""

from __future__ import annotations

from typing import Any

from giants.core.consensus import ConsensusConfig, Entry, Membership, Ready
from giants.core.envelope import Envelope
from giants.core.errors import Rejected
from giants.core.process import Durable, Io

__all__ = ["SoloConsensus", "solo_factory"]


class SoloConsensus:
    def __init__(self, config: ConsensusConfig, durable: Durable) -> None:
        assert list(config.peers) in ([config.node_id], []), "solo has exactly one voter"
        self.node_id = config.node_id
        self.address = config.peers.get(config.node_id, config.node_id)
        self._log_ns = f"{config.ns}.log"
        self._snap_ns = f"{config.ns}.snap"
        snap = durable.get(self._snap_ns, "snap")
        self._snapshot: tuple[int, bytes] | None = (snap[0], snap[1]) if snap else None
        self._last_index = self._snapshot[0] if self._snapshot else 0
        self._ready = Ready(snapshot=self._snapshot)
        for index, (term, command) in durable.items(self._log_ns):
            assert isinstance(index, int)
            if index > self._last_index:
                self._ready.entries.append(Entry(index, term, command))
                self._last_index = index

    def start(self, io: Io) -> None:
        io.trace("leader", term=1)

    def receive(self, io: Io, env: Envelope) -> None:
        raise AssertionError("solo exchanges no messages")

    def tick(self, io: Io) -> None:
        return None

    def handles(self, body: Any) -> bool:
        return False

    def propose(self, io: Io, command: bytes) -> None:
        self._last_index += 1
        io.put(self._log_ns, self._last_index, [1, command])
        self._ready.entries.append(Entry(self._last_index, 1, command))

    def read_barrier(self, io: Io, token: int) -> None:
        self._ready.reads.append((token, self._last_index))

    def compact(self, io: Io, index: int, snapshot: bytes) -> None:
        io.put(self._snap_ns, "snap", [index, snapshot])
        io.delete_range(self._log_ns, 0, index + 1)

    def change_membership(self, io: Io, op: str, node: str, address: str | None = None) -> None:
        raise Rejected("solo consensus has a fixed single-node membership")

    def take_ready(self) -> Ready:
        ready, self._ready = self._ready, Ready()
        return ready

    def leader(self) -> str | None:
        return self.node_id

    def members(self) -> Membership:
        return Membership({self.node_id: self.address}, {})


def solo_factory(config: ConsensusConfig, durable: Durable) -> SoloConsensus:
    return SoloConsensus(config, durable)
