"""The GFS chunkserver (GFS paper §2.3, §3.1-§3.3, §4.5, §5.2).

``ChunkserverCore`` is a sans-I/O process over a ``ChunkStore`` (its disk) and a
``PushBuffer`` (pushed data). Its durable state is one version number per chunk
(``versions`` namespace); the chunk bytes live in the store.

* **Heartbeats** every ``heartbeat_s`` to the master and the shadows: the full chunk
  report ``(handle, version, length)``, leases to extend, corrupt chunks found. The
  master's reply names replicas to delete (orphaned or stale) and extended leases.
* **Data flow** (§3.2): pushed data is stored in the buffer and forwarded to the next
  chunkserver of the chain; the push is acknowledged upstream once the rest of the chain
  holds it. (In the simulator this is the ``PushData`` message; the real driver streams
  the bytes and calls ``PushBuffer.put`` directly.)
* **Mutation order** (§3.1, Figure 2): the primary (the lease holder) checks the lease
  and version, applies the mutation, gives it the next serial number and forwards
  ``Apply`` to every secondary; secondaries apply in serial order; the primary answers
  the client when all have applied. Any failure answers ``Unavailable`` and leaves the
  region inconsistent, as in the paper; the client retries.
* **Record append** (§3.3): the primary appends at its chunk's current end; if the
  record does not fit it pads the chunk to full length on every replica and answers
  ``chunk_full``, and the client retries on the next chunk. Records are limited to a
  quarter chunk.
* **Stale replicas** (§4.5): a read or mutation naming a newer version than the
  replica's is refused, so clients never read stale data.
* **Integrity** (§5.2): a checksum mismatch on any read or partial overwrite removes
  the replica, reports it to the master (an immediate heartbeat) and answers the client
  ``Unavailable`` so it reads another replica; the master re-replicates from a good
  one. An idle-time scan verifies one chunk every ``scan_every_s``.
* **Cloning** (§4.3): on ``Clone`` the chunkserver fetches the chunk from the source in
  ``CLONE_SLICE_BYTES`` pieces and reports ``CloneDone``.
"""

from __future__ import annotations

from typing import Any

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import DefiniteError, Rejected, Unavailable
from giants.core.process import Durable, Io
from giants.core.storage import ChecksumMismatch
from giants.gfs._chunkserver_state import (
    ChunkserverConfig,
    CloneJob,
    HeldLease,
    PendingMutation,
    SerialOrder,
)
from giants.gfs._chunkstore import ChunkStore, PushBuffer
from giants.gfs._messages import (
    Append,
    Applied,
    Apply,
    Clone,
    CloneDone,
    CopyDone,
    CopyLocal,
    Data,
    DropChunk,
    Fetch,
    Grant,
    GrantAck,
    Heartbeat,
    HeartbeatReply,
    Mutated,
    PushAck,
    PushData,
    Read,
    Revoke,
    RevokeAck,
    Write,
)

__all__ = ["ChunkserverConfig", "ChunkserverCore", "VERSIONS_NS"]

VERSIONS_NS = "versions"
# One read or clone fetch moves at most this much (well under the 64 MB frame limit).
MAX_READ_BYTES = 4 * 1024 * 1024
CLONE_SLICE_BYTES = 4 * 1024 * 1024
# Out-of-order mutations a secondary holds while it waits for a missing serial number.
MAX_HELD_APPLIES = 1024


class ChunkserverCore:
    def __init__(self, config: ChunkserverConfig, durable: Durable, store: ChunkStore,
                 buffer: PushBuffer) -> None:
        self.config = config
        self.store = store
        self.buffer = buffer
        self.versions: dict[int, int] = {int(h): int(v) for h, v in durable.items(VERSIONS_NS)}
        self.leases: dict[int, HeldLease] = {}
        self.pending: dict[tuple[int, int], PendingMutation] = {}
        self.orders: dict[int, SerialOrder] = {}
        self.clones: dict[int, CloneJob] = {}
        self.corrupt_found: list[int] = []
        self._msg_map: dict[int, Any] = {}  # msg id of a request we sent -> its context
        self._next_beat = 0.0
        self._next_scan = 0.0
        self._scan_pos = 0

    # -- Process contract -------------------------------------------------------------

    def start(self, io: Io) -> None:
        on_disk = set(self.store.handles())
        for h in sorted(on_disk - set(self.versions)):
            self.store.remove(h)  # created but its version never became durable
        for h in sorted(set(self.versions) - on_disk):
            self._forget(io, h)
        io.trace("chunkserver_start", chunks=len(self.versions))
        self._heartbeat(io)

    def tick(self, io: Io) -> None:
        if io.now >= self._next_beat:
            self._heartbeat(io)
        self._expire(io)
        if io.now >= self._next_scan:
            self._next_scan = io.now + self.config.scan_every_s
            self._scan_one(io)

    def receive(self, io: Io, env: Envelope) -> None:
        handler = _HANDLERS.get(type(env.body))
        if handler is not None:
            try:
                handler(self, io, env)
            except DefiniteError as exc:
                if env.in_reply_to is None:
                    io.reply(env, ErrorReply.definite(exc))
        elif isinstance(env.body, ErrorReply):
            self._on_error(io, env)
        elif env.in_reply_to is None:
            io.reply(env, ErrorReply.definite(Rejected(f"unknown request {type(env.body).__name__}")))

    # -- heartbeats and master instructions -------------------------------------------

    def _heartbeat(self, io: Io) -> None:
        self._next_beat = io.now + self.config.heartbeat_s
        report = [(h, v, self.store.length(h)) for h, v in sorted(self.versions.items())
                  if h not in self.clones]
        extend = sorted(h for h, lease in self.leases.items() if lease.used)
        for lease in self.leases.values():
            lease.used = False
        beat = Heartbeat(self.config.node_id, self.config.address, report, extend,
                         list(self.corrupt_found), io.now)
        self.corrupt_found.clear()
        for m in self.config.masters:
            io.send(m, beat)

    def _on_heartbeat_reply(self, io: Io, env: Envelope) -> None:
        reply: HeartbeatReply = env.body
        for h, version in reply.delete:
            # The reply answers an older report: keep a replica that took a newer
            # version (a lease grant) since.
            if h not in self.leases and self.versions.get(h, 0) <= version:
                io.trace("delete_replica", handle=h, version=self.versions.get(h))
                self._drop(io, h)
        for h in reply.extended:
            lease = self.leases.get(h)
            if lease is not None:
                lease.expiry = max(lease.expiry, reply.sent_at + reply.lease_s)

    def _on_grant(self, io: Io, env: Envelope) -> None:
        g: Grant = env.body
        if g.version < self.versions.get(g.handle, 0):
            raise Rejected(f"grant of version {g.version} older than {self.versions[g.handle]}")
        if g.handle in self.clones or not (g.create or self.store.has(g.handle)):
            raise Unavailable(f"no complete replica of chunk {g.handle} here",
                              reason="no_replica")
        self.store.create(g.handle)
        self._set_version(io, g.handle, g.version)
        if g.primary == self.config.node_id:
            self.leases[g.handle] = HeldLease(g.version, list(g.secondaries), io.now + g.lease_s)
        else:
            self.leases.pop(g.handle, None)
        self.orders[g.handle] = SerialOrder(g.version)
        io.reply(env, GrantAck(g.handle, g.version))

    def _on_revoke(self, io: Io, env: Envelope) -> None:
        self.leases.pop(env.body.handle, None)
        io.reply(env, RevokeAck(env.body.handle))

    def _on_copy_local(self, io: Io, env: Envelope) -> None:
        c: CopyLocal = env.body
        ok = self.versions.get(c.old) == c.version and self.store.has(c.old)
        if ok:
            try:
                self.store.read(c.old, 0, self.store.length(c.old))
            except ChecksumMismatch:
                self._corrupt(io, c.old)
                ok = False
        if ok:
            self.store.copy(c.old, c.new)
            self._set_version(io, c.new, c.version)
        io.reply(env, CopyDone(c.old, c.new, ok))

    def _on_drop(self, io: Io, env: Envelope) -> None:
        h = env.body.handle
        if h not in self.leases:
            self._drop(io, h)

    # -- data flow (§3.2) --------------------------------------------------------------

    def _on_push(self, io: Io, env: Envelope) -> None:
        p: PushData = env.body
        self.buffer.put(p.data_id, p.data)
        if not p.chain:
            io.reply(env, PushAck(p.data_id))
            return
        msg_id = io.send(p.chain[0], PushData(p.data_id, p.data, p.chain[1:]))
        self._msg_map[msg_id] = ("push", env, io.now)

    def _on_push_ack(self, io: Io, env: Envelope) -> None:
        ctx = self._msg_map.pop(env.in_reply_to or 0, None)
        if ctx is not None and ctx[0] == "push":
            io.reply(ctx[1], env.body)

    # -- mutations at the primary (§3.1, §3.3) ----------------------------------------

    def _primary_checks(self, io: Io, handle: int, version: int, data_id: str,
                        length: int) -> tuple[HeldLease, bytes]:
        lease = self.leases.get(handle)
        if lease is None or lease.expiry <= io.now or lease.version != version:
            raise Unavailable(f"not the primary of chunk {handle} v{version}", reason="no_lease")
        data = self.buffer.get(data_id)
        if data is None or len(data) != length:
            raise Unavailable(f"data {data_id} was not pushed here", reason="no_data")
        return lease, data

    def _on_write(self, io: Io, env: Envelope) -> None:
        w: Write = env.body
        lease, data = self._primary_checks(io, w.handle, w.version, w.data_id, w.length)
        if w.offset < 0 or w.offset + w.length > self.config.chunk_size:
            raise Rejected(f"write [{w.offset}, +{w.length}) outside the chunk")
        if w.offset > self.store.length(w.handle):
            raise Rejected(f"write at {w.offset} would leave a hole in chunk {w.handle}")
        self._mutate(io, env, lease, w.handle, w.data_id, data, w.offset, False)

    def _on_append(self, io: Io, env: Envelope) -> None:
        a: Append = env.body
        if a.length > self.config.chunk_size // 4:
            raise Rejected(f"record of {a.length} bytes exceeds a quarter chunk")
        lease, data = self._primary_checks(io, a.handle, a.version, a.data_id, a.length)
        end = self.store.length(a.handle)
        if end + a.length > self.config.chunk_size:
            io.probe("gfs.append_pads_chunk")
            self._mutate(io, env, lease, a.handle, "", b"", self.config.chunk_size, True)
        else:
            self._mutate(io, env, lease, a.handle, a.data_id, data, end, False)

    def _mutate(self, io: Io, env: Envelope, lease: HeldLease, handle: int, data_id: str,
                data: bytes, offset: int, pad: bool) -> None:
        """Apply locally, assign the serial number, forward to the secondaries."""
        if not self._apply_local(io, handle, data_id, data, offset, pad):
            raise Unavailable(f"chunk {handle} is corrupt here", reason="corrupt")
        lease.serial += 1
        lease.used = True
        serial = lease.serial
        length = 0 if pad else len(data)
        reply_offset = offset
        for s in lease.secondaries:
            msg_id = io.send(s, Apply(handle, lease.version, serial, data_id, offset, length))
            self._msg_map[msg_id] = ("apply", handle, serial, io.now)
        if not lease.secondaries:
            io.reply(env, Mutated(reply_offset, pad))
            return
        self.pending[(handle, serial)] = PendingMutation(env, reply_offset, pad, set(lease.secondaries),
                                                  io.now + self.config.mutation_timeout_s)

    def _apply_local(self, io: Io, handle: int, data_id: str, data: bytes, offset: int,
                     pad: bool) -> bool:
        try:
            if pad:
                if self.store.length(handle) < offset:
                    self.store.write(handle, offset, b"")
            else:
                self.store.write(handle, offset, data)
        except ChecksumMismatch:
            self._corrupt(io, handle)
            return False
        if data_id:
            self.buffer.take(data_id)
        return True

    def _on_applied(self, io: Io, env: Envelope) -> None:
        a: Applied = env.body
        self._msg_map.pop(env.in_reply_to or 0, None)
        p = self.pending.get((a.handle, a.serial))
        if p is None:
            return
        p.waiting.discard(env.source)
        if not p.waiting:
            del self.pending[(a.handle, a.serial)]
            io.reply(p.client, Mutated(p.offset, p.chunk_full))

    def _on_error(self, io: Io, env: Envelope) -> None:
        ctx = self._msg_map.pop(env.in_reply_to or 0, None)
        if ctx is None:
            return
        if ctx[0] == "apply":
            p = self.pending.pop((ctx[1], ctx[2]), None)
            if p is not None:
                io.reply(p.client, ErrorReply.definite(Unavailable(
                    f"a secondary failed to apply: {env.body.error.get('message')}",
                    reason="secondary_failed")))
        elif ctx[0] == "fetch":
            self._clone_failed(io, ctx[1])

    # -- mutations at a secondary ------------------------------------------------------

    def _on_apply(self, io: Io, env: Envelope) -> None:
        a: Apply = env.body
        if self.versions.get(a.handle) != a.version:
            raise Unavailable(f"replica of chunk {a.handle} is not at v{a.version}",
                              reason="stale")
        order = self.orders.get(a.handle)
        if order is None or order.version != a.version:
            order = self.orders[a.handle] = SerialOrder(a.version)
        if a.serial < order.next_serial:
            io.reply(env, Applied(a.handle, a.serial))  # a duplicate delivery
            return
        if len(order.held) >= MAX_HELD_APPLIES:
            raise Unavailable("too many out-of-order mutations held", reason="overloaded")
        order.held[a.serial] = env
        if order.stalled_since is None:
            order.stalled_since = io.now
        self._drain_order(io, a.handle, order)

    def _drain_order(self, io: Io, handle: int, order: SerialOrder) -> None:
        while order.next_serial in order.held:
            env = order.held.pop(order.next_serial)
            order.next_serial += 1
            a: Apply = env.body
            data = b"" if not a.data_id else self.buffer.get(a.data_id)
            if data is None or len(data) != a.length:
                io.reply(env, ErrorReply.definite(Unavailable(
                    f"data {a.data_id} was not pushed here", reason="no_data")))
            elif self._apply_local(io, handle, a.data_id, data, a.offset, not a.data_id):
                io.reply(env, Applied(handle, a.serial))
            else:
                io.reply(env, ErrorReply.definite(Unavailable("corrupt replica",
                                                              reason="corrupt")))
                return
        order.stalled_since = io.now if order.held else None

    # -- reads and clones ---------------------------------------------------------------

    def _read(self, io: Io, handle: int, offset: int, length: int) -> bytes | None:
        try:
            return self.store.read(handle, offset, min(length, MAX_READ_BYTES))
        except ChecksumMismatch as exc:
            io.trace("checksum_mismatch", handle=handle, block=exc.block)
            self._corrupt(io, handle)
            return None

    def _on_read(self, io: Io, env: Envelope) -> None:
        """``Read`` (a client: this replica must be at least at the version the master
        named, §4.5) and ``Fetch`` (a clone: exactly the version being cloned)."""
        r: Read | Fetch = env.body
        have = self.versions.get(r.handle)
        if have is None or have < r.version or not self.store.has(r.handle) or \
                (isinstance(r, Fetch) and have != r.version):
            raise Unavailable(f"no replica of chunk {r.handle} v{r.version} here",
                              reason="stale")
        if r.offset < 0 or r.length < 0:
            raise Rejected("negative offset or length")
        data = self._read(io, r.handle, r.offset, r.length)
        if data is None:
            raise Unavailable(f"chunk {r.handle} is corrupt here", reason="corrupt")
        io.reply(env, Data(data, self.store.length(r.handle)))

    def _on_clone(self, io: Io, env: Envelope) -> None:
        c: Clone = env.body
        if c.handle in self.leases or c.handle in self.clones:
            return
        self.store.remove(c.handle)
        self._forget(io, c.handle)
        self.store.create(c.handle)
        job = self.clones[c.handle] = CloneJob(c.version, c.source,
                                                io.now + self.config.clone_timeout_s)
        self._fetch_next(io, c.handle, job)

    def _fetch_next(self, io: Io, handle: int, job: CloneJob) -> None:
        msg_id = io.send(job.source, Fetch(handle, job.version, job.offset, CLONE_SLICE_BYTES))
        self._msg_map[msg_id] = ("fetch", handle, io.now)

    def _on_data(self, io: Io, env: Envelope) -> None:
        ctx = self._msg_map.pop(env.in_reply_to or 0, None)
        if ctx is None or ctx[0] != "fetch" or ctx[1] not in self.clones:
            return
        handle, job, d = ctx[1], self.clones[ctx[1]], env.body
        self.store.write(handle, job.offset, d.data)
        job.offset += len(d.data)
        if job.offset < d.chunk_length and d.data:
            self._fetch_next(io, handle, job)
            return
        del self.clones[handle]
        self._set_version(io, handle, job.version)
        io.send(self.config.masters[0], CloneDone(handle, job.version, True, job.offset))

    def _clone_failed(self, io: Io, handle: int) -> None:
        job = self.clones.pop(handle, None)
        if job is not None:
            self.store.remove(handle)
            io.send(self.config.masters[0], CloneDone(handle, job.version, False, 0))

    # -- housekeeping -----------------------------------------------------------------

    def _expire(self, io: Io) -> None:
        now = io.now
        for key, p in list(self.pending.items()):
            if p.deadline < now:
                del self.pending[key]
                io.reply(p.client, ErrorReply.definite(Unavailable(
                    "a secondary did not apply in time", reason="secondary_timeout")))
        for h, order in self.orders.items():
            if order.held and order.stalled_since is not None and \
                    now - order.stalled_since > self.config.mutation_timeout_s:
                io.probe("gfs.secondary_skips_gap")
                order.next_serial = min(order.held)  # the missing mutation failed
                self._drain_order(io, h, order)
        for h, job in list(self.clones.items()):
            if job.deadline < now:
                self._clone_failed(io, h)
        for h, lease in list(self.leases.items()):
            if lease.expiry <= now:
                del self.leases[h]
        horizon = now - 2 * self.config.mutation_timeout_s
        for msg_id, ctx in list(self._msg_map.items()):
            if ctx[-1] < horizon:
                del self._msg_map[msg_id]

    def _scan_one(self, io: Io) -> None:
        handles = sorted(self.versions)
        if not handles:
            return
        self._scan_pos = (self._scan_pos + 1) % len(handles)
        h = handles[self._scan_pos]
        if h in self.clones or not self.store.has(h):
            return
        bad = self.store.verify(h)
        if bad:
            io.probe("gfs.idle_scan_found_corruption")
            io.trace("idle_scan_corrupt", handle=h, blocks=bad)
            self._corrupt(io, h)

    def _corrupt(self, io: Io, handle: int) -> None:
        """Remove a corrupt replica and tell the master now (§5.2)."""
        io.trace("corrupt_replica", handle=handle)
        self.leases.pop(handle, None)
        self._drop(io, handle)
        self.corrupt_found.append(handle)
        self._heartbeat(io)

    def _set_version(self, io: Io, handle: int, version: int) -> None:
        self.versions[handle] = version
        io.put(VERSIONS_NS, str(handle), version)

    def _forget(self, io: Io, handle: int) -> None:
        if self.versions.pop(handle, None) is not None:
            io.delete(VERSIONS_NS, str(handle))

    def _drop(self, io: Io, handle: int) -> None:
        self.clones.pop(handle, None)
        self.store.remove(handle)
        self._forget(io, handle)
        self.orders.pop(handle, None)


_HANDLERS: dict[type, Any] = {
    HeartbeatReply: ChunkserverCore._on_heartbeat_reply,
    Grant: ChunkserverCore._on_grant,
    Revoke: ChunkserverCore._on_revoke,
    CopyLocal: ChunkserverCore._on_copy_local,
    DropChunk: ChunkserverCore._on_drop,
    PushData: ChunkserverCore._on_push,
    PushAck: ChunkserverCore._on_push_ack,
    Write: ChunkserverCore._on_write,
    Append: ChunkserverCore._on_append,
    Applied: ChunkserverCore._on_applied,
    Apply: ChunkserverCore._on_apply,
    Read: ChunkserverCore._on_read,
    Fetch: ChunkserverCore._on_read,
    Clone: ChunkserverCore._on_clone,
    Data: ChunkserverCore._on_data,
}
