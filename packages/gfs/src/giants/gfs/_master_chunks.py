"""The master's chunk management (GFS paper §3.1 leases, §3.4 snapshot copy-on-write,
§4.3 re-replication and rebalancing, §4.4 garbage collection, §4.5 stale replicas).

``ChunkManager`` is the chunk half of ``MasterCore`` (a sans-I/O process); it uses the
master's ``append_log`` / ``finish`` / ``fail`` / ``on_lease_gone``.

**Leases and versions** (§3.1, §4.5). A client asking for a chunk's primary gets the
current lease if there is one. Otherwise the master picks a primary among the live
up-to-date replicas, logs the attempt at a new version number (so no number is ever
handed out twice, even across a crash) and sends ``Grant`` to every replica. Only when
*all* of them have recorded it does the master log the version as current and answer:
so every replica that can serve the chunk at the logged version took part in
every mutation since (an acknowledged mutation is on all of them), and a replica that
was down is left at an older version -- stale -- and garbage collected. The master
counts a lease from when it receives the primary's acknowledgement (after the primary
started its own lease clock) plus ``LEASE_DRIFT`` so the primary's lease always ends
first. Leases are extended through heartbeats while the primary is mutating, and
revoked when a snapshot needs the chunk, when a replica in the lease dies, or when the
chunk is below its replication goal and can be re-replicated.

**Re-replication** never runs while a chunk has a lease, so a clone copies a chunk no
mutation is touching; a client needing a lease on a chunk below goal waits (``Unavailable``
"re-replicating", retried by the client library) while the master clones it first (§4.3:
chunks blocking client progress get priority).

**Copy-on-write** (§3.4). A write to a chunk shared by several files (a snapshot)
first makes every replica copy it locally under a new handle; only when the copies
exist is the switch logged, so a crash cannot leave a file pointing at a chunk that has
no replica (orphan copies are garbage collected).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import DefiniteError, Rejected, Unavailable
from giants.core.process import Io
from giants.gfs._locations import Locations
from giants.gfs._master_state import (
    LEASE_DRIFT,
    CloneState,
    CopyState,
    GrantState,
    LeaseState,
    MasterConfig,
    Waiter,
)
from giants.gfs._messages import (
    Clone,
    CloneDone,
    CopyDone,
    CopyLocal,
    DropChunk,
    Grant,
    GrantAck,
    Heartbeat,
    HeartbeatReply,
    Lease,
    Revoke,
    RevokeAck,
)
from giants.gfs._namespace import LockSet
from giants.gfs._replication import place, plan_clones, plan_drops, plan_rebalance

if TYPE_CHECKING:
    from giants.gfs._oplog import OpLog

__all__ = ["ChunkManager", "MasterConfig", "LEASE_DRIFT"]

class ChunkManager:
    log: OpLog

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.locs = Locations()
        self.leases: dict[int, LeaseState] = {}
        self.grants: dict[int, GrantState] = {}
        self.clones: dict[int, CloneState] = {}
        self.copies: dict[int, CopyState] = {}
        self.copy_for: dict[tuple[str, int], int] = {}
        self.fresh: dict[int, list[str]] = {}
        self._grant_msgs: dict[int, tuple[int, str]] = {}  # Grant msg id -> (handle, cs)
        # Replicas the master told a chunkserver to drop: reports of them are ignored
        # until the deadline (a heartbeat sent before the drop arrived must not re-add).
        self.dropping: dict[tuple[str, int], float] = {}
        self.corrupt_reported = 0
        self.stale_removed = 0
        self.started_at = 0.0
        self._next_replicate = 0.0
        self._next_rebalance = 0.0
        self._next_gc = 0.0

    if TYPE_CHECKING:  # provided by MasterCore, which extends this class
        def append_log(self, io: Io, rec: dict[str, Any]) -> int: ...
        def finish(self, io: Io, env: Envelope, locks: LockSet, body: Any,
                   seq: int = 0) -> None: ...
        def fail(self, io: Io, env: Envelope, locks: LockSet, exc: DefiniteError) -> None: ...
        def on_lease_gone(self, io: Io, handle: int) -> None: ...

    # -- client lease requests (§3.1) --------------------------------------------------

    def _make_lease_op(self, env: Envelope) -> Any:
        def run(io: Io, locks: LockSet) -> None:
            body = env.body
            md = self.log.md
            if md.ns.is_dir(body.path):
                raise Rejected(f"is a directory: {body.path}")
            chunks = md.ns.file(body.path)
            index = body.index if body.index != -1 else max(len(chunks) - 1, 0)
            if index < 0 or index > len(chunks) or (index == len(chunks) and not body.create):
                raise Rejected(f"chunk {index} is past the end of {body.path} "
                               f"({len(chunks)} chunks)")
            seq = 0
            if index == len(chunks):
                h = md.next_handle
                seq = self.append_log(io, {"op": "add_chunk", "path": body.path, "handle": h})
                self.fresh[h] = place(self.locs, self.config.replication, io.rng)
                io.trace("add_chunk", path=body.path, index=index, handle=h)
            w = Waiter(env, locks, index, seq)
            h = chunks[index]
            if md.refs.get(h, 1) > 1:
                self._copy_on_write(io, w, body.path, index, h)
            else:
                self._lease_or_grant(io, w, h)
        return run

    def _serve(self, io: Io, w: Waiter, h: int) -> None:
        try:
            self._lease_or_grant(io, w, h)
        except DefiniteError as exc:
            self.fail(io, w.env, w.locks, exc)

    def _lease_or_grant(self, io: Io, w: Waiter, h: int) -> None:
        lease = self.leases.get(h)
        if lease is not None:
            if lease.revoking:
                raise Unavailable("the chunk's lease is being revoked; retry", reason="revoking")
            self.finish(io, w.env, w.locks, self._lease_reply(w.index, h, lease), w.seq)
        elif h in self.grants:
            self.grants[h].waiters.append(w)
        elif h in self.clones:
            raise Unavailable("chunk being re-replicated; retry", reason="re-replicating")
        else:
            self._start_grant(io, w, h)

    def _start_grant(self, io: Io, w: Waiter, h: int) -> None:
        version = self.log.md.versions[h]
        replicas = sorted(self.locs.of(h))
        if not replicas and version == 0:
            replicas = [r for r in self.fresh.get(h, []) if r in self.locs.servers]
            if not replicas:
                replicas = place(self.locs, self.config.replication, io.rng)
            self.fresh[h] = replicas
        if not replicas:
            raise Unavailable(f"no live replica of chunk {h} known", reason="no_replica")
        if version > 0 and len(replicas) < self.config.replication and self._clone_now(io, h):
            raise Unavailable("chunk below its replication goal; re-replicating first",
                              reason="re-replicating")
        primary = io.rng.choice(replicas)
        secondaries = [r for r in replicas if r != primary]
        # The attempt is logged before any replica hears of it, so a version number is
        # never handed out twice, even across a master crash (§4.5); the version becomes
        # current only when every replica has it.
        new_version = self.log.md.top_version(h) + 1
        seq = self.append_log(io, {"op": "attempt", "handle": h, "version": new_version})
        for r in replicas:
            msg_id = io.send(r, Grant(h, new_version, primary, secondaries,
                                      self.config.lease_s, version == 0))
            self._grant_msgs[msg_id] = (h, r)
        self.grants[h] = GrantState(new_version, primary, secondaries, set(replicas),
                                    io.now + self.config.request_timeout_s, [w], seq)

    def _on_grant_ack(self, io: Io, cs: str, ack: GrantAck) -> None:
        g = self.grants.get(ack.handle)
        if g is None or g.version != ack.version or cs not in g.waiting:
            return
        g.waiting.discard(cs)
        if g.waiting:
            return
        h = ack.handle
        del self.grants[h]
        self.fresh.pop(h, None)
        g.seq = self.append_log(io, {"op": "version", "handle": h, "version": g.version})
        for r in [g.primary, *g.secondaries]:
            self.locs.add(h, r, g.version)
        lease = LeaseState(g.primary, g.secondaries, g.version,
                           io.now + self.config.lease_s * (1 + LEASE_DRIFT))
        self.leases[h] = lease
        io.trace("lease", handle=h, version=g.version, primary=g.primary)
        for w in g.waiters:
            self.finish(io, w.env, w.locks, self._lease_reply(w.index, h, lease), w.seq)

    def _lease_reply(self, index: int, h: int, lease: LeaseState) -> Lease:
        names = [lease.primary, *lease.secondaries]
        return Lease(index, h, lease.version, lease.primary, list(lease.secondaries),
                     self.locs.addresses(names), self.config.chunk_size)

    def revoke(self, io: Io, h: int) -> None:
        lease = self.leases.get(h)
        if lease is None or lease.revoking:
            return
        lease.revoking = True
        io.trace("revoke", handle=h, primary=lease.primary)
        if lease.primary in self.locs.servers:
            io.send(lease.primary, Revoke(h))

    def _drop_lease(self, io: Io, h: int) -> None:
        if self.leases.pop(h, None) is not None:
            self.on_lease_gone(io, h)

    # -- copy-on-write after a snapshot (§3.4) ----------------------------------------

    def _copy_on_write(self, io: Io, w: Waiter, path: str, index: int, old: int) -> None:
        new = self.copy_for.get((path, index))
        if new is not None:
            self.copies[new].waiters.append(w)
            return
        holders = sorted(self.locs.of(old))
        if not holders:
            raise Unavailable(f"no live replica of chunk {old} to copy", reason="no_replica")
        md = self.log.md
        new = md.next_handle
        self.append_log(io, {"op": "alloc", "next": new + 1})
        version = md.versions[old]
        for cs in holders:
            io.send(cs, CopyLocal(old, new, version))
        self.copies[new] = CopyState(old, new, path, index, version, set(holders),
                                     io.now + self.config.request_timeout_s, [w])
        self.copy_for[(path, index)] = new
        io.trace("copy_on_write", path=path, index=index, old=old, new=new)

    def _on_copy_done(self, io: Io, cs: str, done: CopyDone) -> None:
        c = self.copies.get(done.new)
        if c is None or cs not in c.waiting:
            return
        c.waiting.discard(cs)
        if done.ok:
            c.acked.add(cs)
        if not c.waiting:
            self._finish_copy(io, c)

    def _finish_copy(self, io: Io, c: CopyState) -> None:
        del self.copies[c.new]
        self.copy_for.pop((c.path, c.index), None)
        acked = [cs for cs in sorted(c.acked) if cs in self.locs.servers]
        if not acked:
            for w in c.waiters:
                self.fail(io, w.env, w.locks, Unavailable("copy-on-write failed; retry",
                                                          reason="copy_failed"))
            return
        seq = self.append_log(io, {"op": "cow", "path": c.path, "index": c.index,
                                   "old": c.old, "new": c.new, "version": c.version})
        for cs in acked:
            self.locs.add(c.new, cs, c.version)
        for w in c.waiters:
            w.seq = max(w.seq, seq)
            self._serve(io, w, c.new)

    # -- chunkserver messages ---------------------------------------------------------

    def on_chunk_message(self, io: Io, env: Envelope) -> bool:
        body, src = env.body, env.source
        if isinstance(body, Heartbeat):
            self._on_heartbeat(io, env, body)
        elif isinstance(body, GrantAck):
            self._on_grant_ack(io, src, body)
        elif isinstance(body, RevokeAck):
            lease = self.leases.get(body.handle)
            if lease is not None and lease.primary == src:
                self._drop_lease(io, body.handle)
        elif isinstance(body, CloneDone):
            self._on_clone_done(io, src, body)
        elif isinstance(body, CopyDone):
            self._on_copy_done(io, src, body)
        elif isinstance(body, ErrorReply):
            self._on_refusal(io, env)
        else:
            return False
        return True

    def _on_refusal(self, io: Io, env: Envelope) -> None:
        """A chunkserver refused a grant (it lacks the chunk): forget that replica and
        fail the grant now, so the client's retry is granted without it."""
        ctx = self._grant_msgs.pop(env.in_reply_to or 0, None)
        if ctx is None:
            return
        h, cs = ctx
        io.trace("grant_refused", handle=h, chunkserver=cs)
        self.locs.discard(h, cs)
        g = self.grants.pop(h, None)
        if g is not None:
            for w in g.waiters:
                self.fail(io, w.env, w.locks, Unavailable("a replica refused the lease grant; "
                                                          "retry", reason="grant_refused"))

    def drop_replica(self, io: Io, h: int, cs: str) -> None:
        self.locs.discard(h, cs)
        self.dropping[(cs, h)] = io.now + self.config.dead_after_s
        io.send(cs, DropChunk(h))

    def _on_heartbeat(self, io: Io, env: Envelope, hb: Heartbeat) -> None:
        md = self.log.md
        keep = set(self.copies)
        out = self.locs.report(hb.chunkserver, hb.address, io.now, hb.chunks, md.versions,
                               keep, md.attempts)
        for h, _v, _n in hb.chunks:
            if self.dropping.get((hb.chunkserver, h), -1.0) > io.now:
                self.locs.discard(h, hb.chunkserver)
        for h, v in out.adopt:
            if h in self.grants:
                continue
            io.probe("gfs.adopt_newer_version")
            self.append_log(io, {"op": "version", "handle": h, "version": v})
            for other in list(self.locs.of(h)):
                if self.locs.servers[other].chunks.get(h, 0) < v:
                    self.locs.discard(h, other)
        if out.stale:
            io.probe("gfs.stale_replica")
            io.trace("stale_replicas", chunkserver=hb.chunkserver, handles=out.stale)
            self.stale_removed += len(out.stale)
        if hb.corrupt:
            io.trace("corrupt_reported", chunkserver=hb.chunkserver, handles=hb.corrupt)
            self.corrupt_reported += len(hb.corrupt)
        extended = []
        for h in hb.extend:
            lease = self.leases.get(h)
            if lease is not None and lease.primary == hb.chunkserver and not lease.revoking:
                lease.expiry = io.now + self.config.lease_s * (1 + LEASE_DRIFT)
                extended.append(h)
        io.reply(env, HeartbeatReply(out.delete, extended, self.config.lease_s, hb.sent_at))

    def _on_clone_done(self, io: Io, cs: str, done: CloneDone) -> None:
        c = self.clones.get(done.handle)
        if c is None or c.target != cs:
            return
        del self.clones[done.handle]
        if done.ok and done.version == self.log.md.versions.get(done.handle):
            self.locs.add(done.handle, cs, done.version, done.length)
            io.trace("cloned", handle=done.handle, target=cs, source=c.source)
        elif done.ok:
            self.drop_replica(io, done.handle, cs)

    # -- background work --------------------------------------------------------------

    def _clone(self, io: Io, h: int, source: str, target: str) -> None:
        version = self.log.md.versions[h]
        self.clones[h] = CloneState(target, source, version, io.now + self.config.clone_timeout_s)
        io.send(target, Clone(h, version, source))
        io.trace("clone", handle=h, source=source, target=target)

    def _clone_now(self, io: Io, h: int) -> bool:
        holders = self.locs.of(h)
        targets = [cs for cs in self.locs.live() if cs not in holders]
        if not targets or not holders:
            return False
        target = min(targets, key=lambda cs: (self.locs.load(cs), cs))
        self._clone(io, h, io.rng.choice(sorted(holders)), target)
        return True

    def chunk_tick(self, io: Io) -> None:
        now = io.now
        for h, lease in list(self.leases.items()):
            if lease.expiry < now:
                self._drop_lease(io, h)
        dead = self.locs.expire(now, self.config.dead_after_s)
        if dead:
            io.trace("chunkservers_dead", chunkservers=dead)
            for h, lease in list(self.leases.items()):
                if {lease.primary, *lease.secondaries} & set(dead):
                    self.revoke(io, h)
        self._expire_pending(io, now, set(dead))
        self.dropping = {k: t for k, t in self.dropping.items() if t > now}
        if len(self._grant_msgs) > 4 * (len(self.grants) + 1) * self.config.replication:
            live = set(self.grants)
            self._grant_msgs = {m: c for m, c in self._grant_msgs.items() if c[0] in live}
        if now >= self._next_replicate and now >= self.started_at + self.config.dead_after_s:
            self._next_replicate = now + self.config.replicate_every_s
            self._replicate(io)
        if now >= self._next_gc:
            self._next_gc = now + self.config.gc_scan_s
            self._collect_garbage(io)

    def _expire_pending(self, io: Io, now: float, dead: set[str]) -> None:
        for h, g in list(self.grants.items()):
            if g.deadline < now or g.primary in dead:
                del self.grants[h]
                for w in g.waiters:
                    self.fail(io, w.env, w.locks, Unavailable("lease grant timed out; retry",
                                                              reason="grant_timeout"))
        for h, clone in list(self.clones.items()):
            if clone.deadline < now or clone.target in dead or clone.source in dead:
                del self.clones[h]
        for copy in list(self.copies.values()):
            if copy.deadline < now or copy.waiting & dead:
                copy.waiting.clear()
                self._finish_copy(io, copy)

    def _replicate(self, io: Io) -> None:
        md, goal = self.log.md, self.config.replication
        live = self.locs.live()
        for h, lease in list(self.leases.items()):
            n = len(self.locs.of(h))
            if 0 < n < goal and len(live) > n and not lease.revoking:
                io.probe("gfs.revoke_for_rereplication")
                self.revoke(io, h)
        busy = set(self.leases) | set(self.grants) | set(self.clones)
        busy |= {c.old for c in self.copies.values()}
        slots = self.config.max_clones - len(self.clones)
        for h, source, target in plan_clones(md, self.locs, goal, busy, slots, io.rng):
            self._clone(io, h, source, target)
        if self.clones:
            return
        for h, cs in plan_drops(md, self.locs, goal, busy):
            io.trace("drop_excess", handle=h, chunkserver=cs)
            self.drop_replica(io, h, cs)
        if io.now >= self._next_rebalance:
            self._next_rebalance = io.now + self.config.rebalance_every_s
            move = plan_rebalance(md, self.locs, busy, io.rng)
            if move is not None:
                io.probe("gfs.rebalance")
                self._clone(io, *move)

    def _collect_garbage(self, io: Io) -> None:
        md = self.log.md
        # Placements of new chunks whose first grant never came (the client went away).
        self.fresh = {h: cs for h, cs in self.fresh.items()
                      if md.versions.get(h) == 0 and h not in self.grants}
        for path, at in sorted(md.deleted_at.items()):
            if io.now - at < self.config.gc_after_s:
                continue
            handles = list(md.ns.files.get(path, []))
            self.append_log(io, {"op": "reclaim", "path": path})
            io.trace("reclaim", path=path, chunks=len(handles))
            for h in handles:
                if h not in md.versions:
                    self.locs.forget_chunk(h)
                    self.leases.pop(h, None)
