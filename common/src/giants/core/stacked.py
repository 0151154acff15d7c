"""A service stacked on a consensus core: applying what the core decided, in one place.

The state machine approach (Schneider, ACM Computing Surveys 1990, §3; the Raft
dissertation, ch. 5 "Log compaction" and ch. 6 "Client interaction") splits a replica
into a consensus core that orders commands and a service that applies them. Every
replicated service here (``ReplicatedService``, the Chubby cell, the replicated 2PC
coordinator, ZooKeeper) is such a stack over a ``ConsensusCore`` (``giants.core.consensus``)
and handles the core's ``Ready`` the same way. ``LogApplier`` is that handling; the
service supplies what is its own through the ``StackedService`` callbacks (and, if it
serves linearizable reads, ``ReadService``).

One ``drain(io)`` takes the core's ``Ready`` and, in this order:

1. **Snapshot.** One newer than ``applied_index`` is handed to ``restore_state``; then
   ``applied_index`` and ``snapshot_index`` become its index. One at or below
   ``applied_index`` is ignored (the service is already past it).
2. **Entries**, in index order. One at or below ``applied_index`` is skipped (a snapshot
   covered it); the next one must be ``applied_index + 1`` (a gap is a broken invariant
   of the core: ``AssertionError``). ``applied_index`` advances before the command reaches
   ``apply_committed``; entries the core made for itself (``command is None``) advance it
   without reaching the service.
3. **Failed reads** go to ``fail_read`` (the read barrier can never complete: the node
   lost leadership); then **completed reads** join a queue and every queued read whose
   read index is at or below ``applied_index`` goes to ``serve_read``, in queue order.
   A read forgotten meanwhile (``forget_reads``) is not answered at all.
4. **Compaction**: once ``snapshot_every`` entries were applied since the last snapshot,
   ``consensus.compact(io, applied_index, snapshot_state())``.
5. **Leadership edges**: when "the core names this node leader" changed since the last
   drain, ``leading`` takes the new value and then ``leadership_changed(io, leading)``
   runs (so a service may propose a take-over entry, or drop its leader-only state).

Rules: sans-I/O (no trio, time, random or os); ``io`` only carries effects. Read tokens
are this object's own counter, so one service's reads never collide. Whatever a callback
raises propagates out of ``drain`` (``ReplicatedService.restore_state`` raises
``RemoteProtocolError`` for an undecodable snapshot) and the rest of that ``Ready``
(already taken from the core) is not applied. A snapshot whose ``restore_state`` raised
does not count as applied; an entry whose ``apply_committed`` raised does.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

import msgpack

from giants.core.consensus import ConsensusCore
from giants.core.envelope import Envelope
from giants.core.process import Io

__all__ = ["LogApplier", "ReadService", "StackedService", "pack", "unpack"]

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


def pack(value: Any) -> bytes:
    """Plain msgpack, as stacked services encode their log commands and snapshots (their
    own data, so no message tags)."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    """The inverse of ``pack``; raises ``ValueError`` / ``msgpack.UnpackException`` for
    bytes it did not make."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class StackedService(Protocol):
    """What a service stacked on a consensus core supplies to its ``LogApplier``."""

    def apply_committed(self, io: Io, index: int, command: bytes) -> None:
        """Apply the committed ``command`` at log ``index`` (``applied_index == index``)."""
        ...

    def snapshot_state(self) -> bytes:
        """The service's whole replicated state, as ``restore_state`` takes it back."""
        ...

    def restore_state(self, data: bytes) -> None:
        """Replace the replicated state with a snapshot from ``snapshot_state`` (of this
        replica or another). ``applied_index`` is updated after this returns."""
        ...

    def leadership_changed(self, io: Io, leading: bool) -> None:
        """This node became (``True``) or stopped being (``False``) the core's leader."""
        ...


class ReadService(Protocol[R_contra]):
    """How a service answers the reads it started with ``LogApplier.read_barrier``."""

    def serve_read(self, io: Io, read: R_contra) -> None:
        """The barrier completed and the service applied its read index: answer it."""
        ...

    def fail_read(self, io: Io, read: R_contra) -> None:
        """The barrier can never complete (leadership was lost)."""
        ...


class LogApplier(Generic[R]):
    """Applies a consensus core's ``Ready`` to the service stacked on it (module docs).

    ``R`` is what the service remembers per read (``typing.Never`` for a service that
    serves no reads: it passes no ``reads``)."""

    def __init__(self, consensus: ConsensusCore, service: StackedService, *,
                 snapshot_every: int, reads: ReadService[R] | None = None) -> None:
        assert snapshot_every > 0, f"snapshot_every must be positive, not {snapshot_every}"
        self.consensus = consensus
        self.service = service
        self.reads = reads
        self.snapshot_every = snapshot_every
        self.applied_index = 0
        self.snapshot_index = 0
        self.leading = False
        self._next_token = 0
        self._pending: dict[int, R] = {}
        self._queued: list[tuple[int, int]] = []      # (token, read index) not yet applied

    # -- hosting the consensus core ---------------------------------------------------

    def start(self, io: Io) -> None:
        """Start the consensus core and apply what it recovered (its durable snapshot
        and log)."""
        self.consensus.start(io)
        self.drain(io)

    def tick(self, io: Io) -> None:
        """Tick the consensus core and apply what became ready."""
        self.consensus.tick(io)
        self.drain(io)

    def receive(self, io: Io, env: Envelope) -> bool:
        """Hand ``env`` to the consensus core if it is one of its protocol messages;
        returns whether it was. Does not drain (the service drains once per call)."""
        if not self.consensus.handles(env.body):
            return False
        self.consensus.receive(io, env)
        return True

    # -- reads ------------------------------------------------------------------------

    @property
    def pending_reads(self) -> int:
        """Reads started and not yet served, failed or forgotten."""
        return len(self._pending)

    def read_barrier(self, io: Io, read: R) -> None:
        """Start a linearizable read: ``read`` comes back through ``serve_read`` once the
        service applied the read index, or ``fail_read``. Raises ``NotLeader`` (from the
        core): nothing is registered."""
        assert self.reads is not None, "read_barrier on a LogApplier built without reads"
        self._next_token += 1
        token = self._next_token
        self.consensus.read_barrier(io, token)
        self._pending[token] = read

    def forget_reads(self) -> None:
        """Drop every pending read unanswered (a service resetting its leader state)."""
        self._pending = {}
        self._queued = []

    # -- applying ---------------------------------------------------------------------

    def drain(self, io: Io) -> None:
        """Apply the core's ``Ready`` (the steps of the module docstring)."""
        ready = self.consensus.take_ready()
        if ready.snapshot is not None and ready.snapshot[0] > self.applied_index:
            index, data = ready.snapshot
            self.service.restore_state(data)
            self.applied_index = self.snapshot_index = index
        for entry in ready.entries:
            if entry.index <= self.applied_index:
                continue
            assert entry.index == self.applied_index + 1, (
                f"{self.consensus.node_id}: gap in applied entries "
                f"{self.applied_index} -> {entry.index}")
            self.applied_index = entry.index
            if entry.command is not None:
                self.service.apply_committed(io, entry.index, entry.command)
        if ready.failed_reads or ready.reads or self._queued:
            self._answer_reads(io, ready.failed_reads, ready.reads)
        if self.applied_index - self.snapshot_index >= self.snapshot_every:
            self.consensus.compact(io, self.applied_index, self.service.snapshot_state())
            self.snapshot_index = self.applied_index
        leading = self.consensus.leader() == self.consensus.node_id
        if leading != self.leading:
            self.leading = leading
            self.service.leadership_changed(io, leading)

    def _answer_reads(self, io: Io, failed: list[int], done: list[tuple[int, int]]) -> None:
        assert self.reads is not None, "the consensus core answered a read nobody started"
        for token in failed:
            if token in self._pending:
                self.reads.fail_read(io, self._pending.pop(token))
        self._queued.extend(done)
        still = []
        for token, read_index in self._queued:
            if read_index > self.applied_index:
                still.append((token, read_index))
                continue
            if token in self._pending:
                self.reads.serve_read(io, self._pending.pop(token))
        self._queued = still
