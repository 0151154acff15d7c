"""The state-machine-replication interface every consensus plugin implements.

A consensus plugin (``raft``, ``paxos``, the core's single-node ``solo``) provides a
``ConsensusFactory``: ``factory(config, durable) -> ConsensusCore``. A consensus core is
a sans-I/O ``Process`` (``giants.core.process``) with a few extra inputs and one
output queue, in the style of etcd-io/raft's ``Ready``:

* ``propose(io, command)``  -- append an opaque ``bytes`` command; raises ``NotLeader``
  (definite: it was not appended) when this node cannot accept proposals. A proposal
  that was accepted may still be lost (leader change) -- callers retry with
  client-session deduplication, which ``ReplicatedService`` does.
* ``read_barrier(io, token)`` -- start a linearizable read (ReadIndex or a lease);
  raises ``NotLeader``. When it is safe to read, ``(token, read_index)`` comes out in
  ``Ready.reads``: the read may be served once the state machine applied
  ``read_index``. If it can never complete (leadership lost) the token comes out in
  ``Ready.failed_reads``.
* ``compact(io, index, snapshot)`` -- the state machine's snapshot at applied
  ``index``; the core persists it and may discard its log up to ``index``.
* ``change_membership(io, op, node, address)`` -- ``op`` is ``"add_learner"``,
  ``"promote"`` or ``"remove"``; raises ``NotLeader`` or ``Rejected``.
* ``take_ready() -> Ready`` -- committed entries in index order (each exactly once per
  process lifetime), a snapshot to install first (also the durable one right after a
  restart), and completed reads.
* ``leader()`` -- the leader this node believes in (None if unknown);
  ``members()`` -- voter and learner ids with their addresses.

Durable state goes through ``io.put`` under namespaces starting with ``config.ns``, so a
consensus core can share a node's ``Durable`` with the service above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from giants.core.envelope import Envelope
from giants.core.process import Durable, Io

__all__ = [
    "Entry",
    "Ready",
    "Membership",
    "ConsensusConfig",
    "ConsensusCore",
    "ConsensusFactory",
    "StateMachine",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """A committed log entry. ``command`` is None for entries the consensus layer made
    for itself (no-ops, configuration changes): the service skips them.

    ``index`` is the same on every replica and grows by one along the log. ``term`` is
    informational only (the term or ballot the entry was chosen under, 0 when the replica
    does not know it, as a Paxos learner catching up does): it may differ between
    replicas and need not be monotone, so derive nothing client-visible from it."""

    index: int
    term: int
    command: bytes | None


@dataclass
class Ready:
    snapshot: tuple[int, bytes] | None = None
    entries: list[Entry] = field(default_factory=list)
    reads: list[tuple[int, int]] = field(default_factory=list)
    failed_reads: list[int] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.snapshot or self.entries or self.reads or self.failed_reads)


@dataclass(frozen=True)
class Membership:
    voters: dict[str, str]     # node id -> address ("host:port"; the id itself in simulation)
    learners: dict[str, str]


@dataclass(frozen=True)
class ConsensusConfig:
    """What every consensus core is built from.

    ``peers`` maps each initial voter (including ``node_id``) to its address. A node
    started with ``join=True`` begins with no configuration of its own and waits to be
    added by the leader (as a learner). ``options`` holds plugin-specific settings
    (timeouts in ticks, batch sizes), documented by each plugin.
    """

    node_id: str
    peers: dict[str, str]
    ns: str = "consensus"
    join: bool = False
    options: dict[str, Any] = field(default_factory=dict)


class ConsensusCore(Protocol):
    node_id: str

    def start(self, io: Io) -> None: ...
    def receive(self, io: Io, env: Envelope) -> None: ...
    def tick(self, io: Io) -> None: ...
    def handles(self, body: Any) -> bool:
        """True if ``body`` is one of this core's own protocol messages."""
        ...
    def propose(self, io: Io, command: bytes) -> None: ...
    def read_barrier(self, io: Io, token: int) -> None: ...
    def compact(self, io: Io, index: int, snapshot: bytes) -> None: ...
    def change_membership(self, io: Io, op: str, node: str, address: str | None = None) -> None: ...
    def take_ready(self) -> Ready: ...
    def leader(self) -> str | None: ...
    def members(self) -> Membership: ...


ConsensusFactory = Callable[[ConsensusConfig, Durable], ConsensusCore]


class StateMachine(Protocol):
    """A deterministic state machine replicated by ``ReplicatedService``.

    ``validate_command`` / ``validate_query`` raise ``Rejected`` for malformed input
    before anything reaches the log. ``apply`` must be deterministic; it may raise a
    ``DefiniteError`` (the command is applied as a no-op and the error is the result).
    """

    def validate_command(self, command: Any) -> None: ...
    def validate_query(self, query: Any) -> None: ...
    def apply(self, command: Any) -> Any: ...
    def query(self, query: Any) -> Any: ...
    def snapshot(self) -> Any: ...
    def restore(self, snapshot: Any) -> None: ...
