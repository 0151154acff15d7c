"""The GFS master: namespace operations and the operation log (GFS paper §2.6, §4.1, §5.1.3).

``MasterCore`` is a sans-I/O process (``giants.core.process``). This module holds its
namespace side; chunk-level work (leases, versions, heartbeats, cloning, copy-on-write,
garbage collection) is in ``_master_chunks.ChunkManager``, which this class extends.

Ordering contract, per mutation: take the operation's namespace locks (§4.1); check it
against the metadata; append its record to the operation log (applied in memory and
recorded as a durable put, so the host persists it before anything leaves); send it to
every shadow master; reply to the client only when every in-sync shadow has
acknowledged it (§2.6.3: "respond to a client operation only after flushing the
corresponding log record to disk both locally and remotely"); then release the locks.
A shadow that stays silent for ``shadow_sync_timeout_s`` is dropped from the in-sync
set (logged) and caught up later; the local log alone still makes the mutation durable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import DefiniteError, NotFound, Rejected, Unavailable
from giants.core.process import Durable, Io
from giants.gfs._master_chunks import ChunkManager, MasterConfig
from giants.gfs._messages import (
    Create,
    Delete,
    Fsck,
    GetLease,
    LogAck,
    LogAppend,
    Mkdir,
    Ok,
    Rename,
    Snapshot,
)
from giants.gfs._namespace import HIDDEN_DIR, LockSet, LockTable, ancestors, check_path
from giants.gfs._oplog import OpLog
from giants.gfs._reads import answer_read, fsck_report

__all__ = ["MasterCore", "MasterConfig"]

# Records sent to a lagging shadow in one catch-up message.
MAX_CATCHUP_RECORDS = 256
# Operations waiting for namespace locks; beyond this new ones are refused (Unavailable).
MAX_QUEUED_OPS = 10_000


@dataclass
class _Deferred:
    seq: int
    env: Envelope
    body: Any
    locks: LockSet
    since: float


@dataclass
class _Snapshotting:
    env: Envelope
    locks: LockSet
    src: str
    dst: str
    handles: set[int] = field(default_factory=set)


class MasterCore(ChunkManager):
    """The single GFS master. Build with ``MasterCore(config, durable)``."""

    def __init__(self, config: MasterConfig, durable: Durable) -> None:
        self.log = OpLog(durable)
        super().__init__(config)
        self.locks = LockTable()
        self._queue: list[tuple[LockSet, Callable[[Io, LockSet], None], Envelope]] = []
        self._draining = False
        self._deferred: list[_Deferred] = []
        self._snapshots: list[_Snapshotting] = []
        self.shadow_acked: dict[str, int] = {s: 0 for s in config.shadows}
        self.in_sync: set[str] = set()
        self._shadow_sent_at: dict[str, float] = {s: -1e9 for s in config.shadows}

    # -- Process contract -------------------------------------------------------------

    def start(self, io: Io) -> None:
        self.started_at = io.now
        md = self.log.md
        # Deletion times are the old process's clock: restart every grace period now.
        for p in md.deleted_at:
            md.deleted_at[p] = io.now
        io.trace("master_start", applied=md.applied, replayed=self.log.replayed,
                 files=len(md.ns.files))
        for s in self.config.shadows:
            io.send(s, LogAppend(md.applied + 1, [], None, 0))

    def receive(self, io: Io, env: Envelope) -> None:
        body = env.body
        try:
            if isinstance(body, (Create, Mkdir, Delete, Rename, Snapshot, GetLease)):
                self._submit(io, env)
            elif isinstance(body, Fsck):
                io.reply(env, fsck_report(self.log.md, self.locs, self.config.replication,
                                          self.corrupt_reported, self.stale_removed,
                                          len(self.clones)))
            elif isinstance(body, LogAck):
                self._on_log_ack(io, env.source, body)
            elif not self.on_chunk_message(io, env):
                reply = answer_read(self.log.md, self.locs, self.config.chunk_size, body)
                if reply is None:
                    raise Rejected(f"unknown request {type(body).__name__}")
                io.reply(env, reply)
        except DefiniteError as exc:
            if env.in_reply_to is None:
                io.reply(env, ErrorReply.definite(exc))

    def tick(self, io: Io) -> None:
        self.chunk_tick(io)
        self._progress_snapshots(io)
        self._shadow_tick(io)
        self.log.maybe_checkpoint(io, self.config.checkpoint_every)

    # -- the lock queue (§4.1) --------------------------------------------------------

    def _submit(self, io: Io, env: Envelope) -> None:
        body = env.body
        if isinstance(body, GetLease):
            path = check_path(body.path)
            locks = LockTable.lock_set([path], [])
            fn = self._make_lease_op(env)
        else:
            paths = [body.src, body.dst] if isinstance(body, (Rename, Snapshot)) else [body.path]
            for p in paths:
                check_path(p)
            locks = LockTable.lock_set([], paths)
            fn = self._make_ns_op(env)
        if len(self._queue) >= MAX_QUEUED_OPS:
            raise Unavailable("master busy: too many queued operations")
        self._queue.append((locks, fn, env))
        self._drain(io)

    def _drain(self, io: Io) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            progressed = True
            while progressed:
                progressed = False
                for item in list(self._queue):
                    locks, fn, env = item
                    if self.locks.try_acquire(locks):
                        self._queue.remove(item)
                        progressed = True
                        try:
                            fn(io, locks)
                        except DefiniteError as exc:
                            self.locks.release(locks)
                            io.reply(env, ErrorReply.definite(exc))
        finally:
            self._draining = False

    def finish(self, io: Io, env: Envelope, locks: LockSet, body: Any, seq: int = 0) -> None:
        """Reply ``body`` once log record ``seq`` is on every in-sync shadow, then unlock."""
        if seq and any(self.shadow_acked[s] < seq for s in self.in_sync):
            self._deferred.append(_Deferred(seq, env, body, locks, io.now))
            return
        io.reply(env, body)
        self.locks.release(locks)
        self._drain(io)

    def fail(self, io: Io, env: Envelope, locks: LockSet, exc: DefiniteError) -> None:
        io.reply(env, ErrorReply.definite(exc))
        self.locks.release(locks)
        self._drain(io)

    def append_log(self, io: Io, rec: dict[str, Any]) -> int:
        seq = self.log.append(io, rec)
        for s in self.config.shadows:
            if s in self.in_sync or self.shadow_acked[s] == seq - 1:
                io.send(s, LogAppend(seq, [rec], None, 0))
        return seq

    # -- namespace mutations ----------------------------------------------------------

    def _make_ns_op(self, env: Envelope) -> Callable[[Io, LockSet], None]:
        def run(io: Io, locks: LockSet) -> None:
            body = env.body
            if isinstance(body, Snapshot):
                self._start_snapshot(io, env, locks, body)
                return
            rec = self._ns_record(io, body)
            seq = self.append_log(io, rec)
            io.trace("ns_op", op=rec["op"], seq=seq)
            self.finish(io, env, locks, Ok(), seq)
        return run

    def _check_new(self, path: str) -> None:
        ns = self.log.md.ns
        if ns.exists(path):
            raise Rejected(f"already exists: {path}")
        for a in ancestors(path):
            if a in ns.files:
                raise Rejected(f"not a directory: {a}")

    def _ns_record(self, io: Io, body: Any) -> dict[str, Any]:
        ns = self.log.md.ns
        if isinstance(body, (Create, Mkdir)):
            self._check_new(body.path)
            return {"op": "create" if isinstance(body, Create) else "mkdir", "path": body.path}
        if isinstance(body, Delete):
            if not ns.exists(body.path):
                raise NotFound(f"no such file or directory: {body.path}")
            if ns.is_dir(body.path):
                if ns.children[body.path]:
                    raise Rejected(f"directory not empty: {body.path}")
                return {"op": "rmdir", "path": body.path}
            flat = body.path[1:].replace("/", "|")
            hidden = f"{HIDDEN_DIR}/{self.log.applied + 1}-{flat}"
            return {"op": "delete", "path": body.path, "hidden": hidden, "at": io.now}
        assert isinstance(body, Rename)
        self._check_move(body.src, body.dst)
        return {"op": "rename", "src": body.src, "dst": body.dst}

    def _check_move(self, src: str, dst: str) -> None:
        if not self.log.md.ns.exists(src):
            raise NotFound(f"no such file or directory: {src}")
        if dst == src or dst.startswith(src.rstrip("/") + "/"):
            raise Rejected(f"cannot move {src} into itself")
        self._check_new(dst)

    # -- snapshot (§3.4) ---------------------------------------------------------------

    def _start_snapshot(self, io: Io, env: Envelope, locks: LockSet, body: Snapshot) -> None:
        self._check_move(body.src, body.dst)
        md = self.log.md
        files, _ = md.ns.subtree(body.src)
        snap = _Snapshotting(env, locks, body.src, body.dst,
                             {h for f in files for h in md.ns.files[f]})
        for h in snap.handles:
            self.revoke(io, h)
        self._snapshots.append(snap)
        self._progress_snapshots(io)

    def _progress_snapshots(self, io: Io) -> None:
        for snap in list(self._snapshots):
            if any(h in self.leases or h in self.grants for h in snap.handles):
                continue
            self._snapshots.remove(snap)
            seq = self.append_log(io, {"op": "snapshot", "src": snap.src, "dst": snap.dst})
            io.trace("snapshot", src=snap.src, dst=snap.dst, chunks=len(snap.handles))
            self.finish(io, snap.env, snap.locks, Ok(), seq)

    def on_lease_gone(self, io: Io, handle: int) -> None:
        if self._snapshots:
            self._progress_snapshots(io)

    # -- shadow masters (§5.1.3) -------------------------------------------------------

    def _on_log_ack(self, io: Io, shadow: str, ack: LogAck) -> None:
        if shadow not in self.shadow_acked:
            return
        self.shadow_acked[shadow] = max(self.shadow_acked[shadow], ack.applied)
        if ack.applied >= self.log.applied:
            if shadow not in self.in_sync:
                io.trace("shadow_in_sync", shadow=shadow, seq=ack.applied)
            self.in_sync.add(shadow)
        elif shadow not in self.in_sync:
            self._catch_up(io, shadow)
        self._flush_deferred(io)

    def _catch_up(self, io: Io, shadow: str) -> None:
        if io.now - self._shadow_sent_at[shadow] < self.config.shadow_resend_s:
            return
        self._shadow_sent_at[shadow] = io.now
        io.send(shadow, self.log.catch_up(self.shadow_acked[shadow], MAX_CATCHUP_RECORDS))

    def _flush_deferred(self, io: Io) -> None:
        ready = [d for d in self._deferred
                 if all(self.shadow_acked[s] >= d.seq for s in self.in_sync)]
        if not ready:
            return
        done = {id(d) for d in ready}
        self._deferred = [d for d in self._deferred if id(d) not in done]
        for d in ready:
            io.reply(d.env, d.body)
            self.locks.release(d.locks)
        self._drain(io)

    def _shadow_tick(self, io: Io) -> None:
        timeout = self.config.shadow_sync_timeout_s
        for d in self._deferred:
            if io.now - d.since > self.config.shadow_resend_s:
                for s in sorted(self.in_sync):
                    if self.shadow_acked[s] < d.seq:
                        self._catch_up(io, s)  # a record may have been lost: resend
            if io.now - d.since > timeout:
                for s in sorted(self.in_sync):
                    if self.shadow_acked[s] < d.seq:
                        self.in_sync.discard(s)
                        io.trace("shadow_lagging", shadow=s, acked=self.shadow_acked[s])
                        io.probe("gfs.shadow_dropped_from_sync")
        self._flush_deferred(io)
        for s in self.config.shadows:
            if s not in self.in_sync:
                self._catch_up(io, s)
