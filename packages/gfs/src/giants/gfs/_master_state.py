"""The master's configuration and the state of its in-flight chunk work (GFS paper §3.1
leases, §3.4 copy-on-write, §4.3 clones): plain records, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field

from giants.core.envelope import Envelope
from giants.gfs._namespace import LockSet

__all__ = ["LEASE_DRIFT", "MasterConfig", "LeaseState", "Waiter", "GrantState", "CloneState",
           "CopyState"]

# The master assumes clocks run at most 1% apart: it holds a lease 1% longer than the
# primary believes it has it.
LEASE_DRIFT = 0.01
MB = 1024 * 1024


@dataclass(frozen=True)
class MasterConfig:
    node_id: str = "master"
    shadows: tuple[str, ...] = ()
    chunk_size: int = 64 * MB          # §2.5
    replication: int = 3               # §4.3
    lease_s: float = 60.0              # §3.1: "initial timeout of 60 seconds"
    dead_after_s: float = 3.0          # silent chunkserver is dead after this
    request_timeout_s: float = 2.0     # a grant or copy-on-write waits this long for replicas
    clone_timeout_s: float = 60.0
    max_clones: int = 8                # concurrent re-replications (§4.3 throttles clones)
    replicate_every_s: float = 0.5
    rebalance_every_s: float = 10.0
    gc_after_s: float = 3 * 24 * 3600.0  # §4.4: hidden files reclaimed after three days
    gc_scan_s: float = 60.0
    checkpoint_every: int = 500        # log records between checkpoints
    shadow_sync_timeout_s: float = 2.0
    shadow_resend_s: float = 0.5

    def __post_init__(self) -> None:
        if self.chunk_size < 1024 or self.replication < 1 or self.lease_s <= 0:
            raise ValueError("chunk_size >= 1024, replication >= 1, lease_s > 0 required")


@dataclass
class LeaseState:
    primary: str
    secondaries: list[str]
    version: int
    expiry: float
    revoking: bool = False


@dataclass
class Waiter:
    env: Envelope
    locks: LockSet
    index: int
    seq: int


@dataclass
class GrantState:
    version: int
    primary: str
    secondaries: list[str]
    waiting: set[str]
    deadline: float
    waiters: list[Waiter]
    seq: int = 0  # the log record of the new version


@dataclass
class CloneState:
    target: str
    source: str
    version: int
    deadline: float


@dataclass
class CopyState:
    old: int
    new: int
    path: str
    index: int
    version: int
    waiting: set[str]
    deadline: float
    waiters: list[Waiter]
    acked: set[str] = field(default_factory=set)
