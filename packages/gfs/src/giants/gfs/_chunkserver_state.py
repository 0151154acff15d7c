"""The chunkserver's configuration and per-chunk state (GFS paper §3.1: leases held as
primary, mutations waiting for secondaries, a secondary's place in the primary's serial
order; §4.3: clones in progress): plain records, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field

from giants.core.envelope import Envelope

__all__ = ["ChunkserverConfig", "HeldLease", "PendingMutation", "SerialOrder", "CloneJob"]


@dataclass(frozen=True)
class ChunkserverConfig:
    node_id: str
    address: str
    masters: tuple[str, ...] = ("master",)
    chunk_size: int = 64 * 1024 * 1024
    heartbeat_s: float = 1.0
    mutation_timeout_s: float = 2.0   # a secondary must apply within this
    clone_timeout_s: float = 60.0
    scan_every_s: float = 30.0


@dataclass
class HeldLease:
    version: int
    secondaries: list[str]
    expiry: float
    serial: int = 0
    used: bool = False


@dataclass
class PendingMutation:
    client: Envelope
    offset: int
    chunk_full: bool
    waiting: set[str]
    deadline: float


@dataclass
class SerialOrder:
    """A secondary's position in the primary's serial order for one chunk version."""

    version: int
    next_serial: int = 1
    held: dict[int, Envelope] = field(default_factory=dict)
    stalled_since: float | None = None


@dataclass
class CloneJob:
    version: int
    source: str
    deadline: float
    offset: int = 0
