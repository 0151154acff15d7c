"""A GFS shadow master (GFS paper §5.1.3 "Master Replication").

"Shadow masters provide read-only access to the file system even when the primary
master is down ... To keep itself informed, a shadow master reads a replica of the
growing operation log and applies the same sequence of changes to its data structures
exactly as the primary does. Like the primary, it polls chunkservers at startup (and
infrequently thereafter) to locate chunk replicas."

``ShadowCore`` receives the master's ``LogAppend`` messages, makes each record durable
in its own operation log (with its own checkpoints) before acknowledging it -- this is
the remote copy the master waits for before answering a mutation -- and answers
read-only requests (list, stat, chunk locations, fsck) from its possibly slightly
stale state. It learns locations from the chunkservers' heartbeats but never deletes
replicas or grants leases; mutations get ``Unavailable`` ("read-only").
"""

from __future__ import annotations

from dataclasses import dataclass

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import DefiniteError, Rejected, Unavailable
from giants.core.process import Durable, Io
from giants.gfs._locations import Locations
from giants.gfs._messages import (
    Fsck,
    Heartbeat,
    HeartbeatReply,
    LogAck,
    LogAppend,
)
from giants.gfs._oplog import OpLog
from giants.gfs._reads import answer_read, fsck_report

__all__ = ["ShadowConfig", "ShadowCore"]


@dataclass(frozen=True)
class ShadowConfig:
    node_id: str = "shadow"
    master: str = "master"
    chunk_size: int = 64 * 1024 * 1024
    replication: int = 3
    lease_s: float = 60.0
    dead_after_s: float = 3.0
    checkpoint_every: int = 500


class ShadowCore:
    def __init__(self, config: ShadowConfig, durable: Durable) -> None:
        self.config = config
        self.log = OpLog(durable)
        self.locs = Locations()

    def start(self, io: Io) -> None:
        io.trace("shadow_start", applied=self.log.applied)
        io.send(self.config.master, LogAck(self.log.applied))

    def tick(self, io: Io) -> None:
        self.locs.expire(io.now, self.config.dead_after_s)
        self.log.maybe_checkpoint(io, self.config.checkpoint_every)

    def receive(self, io: Io, env: Envelope) -> None:
        body = env.body
        try:
            if isinstance(body, LogAppend):
                self._on_log(io, env, body)
            elif isinstance(body, Heartbeat):
                self.locs.report(body.chunkserver, body.address, io.now, body.chunks,
                                 self.log.md.versions, set(), self.log.md.attempts)
                io.reply(env, HeartbeatReply([], [], self.config.lease_s, body.sent_at))
            elif isinstance(body, Fsck):
                io.reply(env, fsck_report(self.log.md, self.locs, self.config.replication,
                                          0, 0, 0))
            elif env.in_reply_to is None:
                reply = answer_read(self.log.md, self.locs, self.config.chunk_size, body)
                if reply is None:
                    raise Unavailable("shadow master is read-only; ask the master",
                                      reason="read_only")
                io.reply(env, reply)
        except DefiniteError as exc:
            if env.in_reply_to is None:
                io.reply(env, ErrorReply.definite(exc))

    def _on_log(self, io: Io, env: Envelope, msg: LogAppend) -> None:
        if env.source != self.config.master:
            raise Rejected(f"log records accepted only from {self.config.master}")
        if msg.checkpoint is not None and msg.checkpoint_seq > self.log.applied:
            io.probe("gfs.shadow_installs_checkpoint")
            self.log.install(io, msg.checkpoint)
        self.log.accept(io, msg.first, msg.records)
        io.reply(env, LogAck(self.log.applied))
