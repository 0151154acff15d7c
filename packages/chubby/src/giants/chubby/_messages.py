"""Chubby's client <-> cell messages (Burrows, OSDI 2006, §2.8 "Sessions and KeepAlives",
§2.6 "API", §2.12 "Fail-overs").

Clients talk only to the master; any replica answers ``WhereIsMaster`` (the paper's
"asking replicas"), and every other request to a non-master replica gets
``NotLeader(hint)``. Every request but ``CreateSession`` and ``WhereIsMaster`` carries
the session id and the master epoch the client knows; a master rejects an older epoch
(``Rejected`` with ``reason="old_epoch"``), except on ``KeepAlive``, whose reply tells the
client about the new epoch (the fail-over event).

Operations are ``Call(session, epoch, seq, op, args)``. Mutating operations carry a
per-session ``seq`` so a retry after a lost reply or a fail-over is applied once; reads
use ``seq = 0``. Results are plain msgpack data described in ``_namespace``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from giants.core.codec import message

__all__ = ["CreateSession", "SessionInfo", "KeepAlive", "KeepAliveReply", "Call", "CallResult",
           "WhereIsMaster", "MasterInfo", "READ_OPS", "WRITE_OPS"]

# Operations answered from the master's applied database after a read barrier.
READ_OPS = frozenset({"read", "stat", "readdir", "sequencer", "check_sequencer", "lookup"})
# Operations that go through the replicated log.
WRITE_OPS = frozenset({"open", "close", "write", "delete", "acquire", "try_acquire",
                       "release", "set_acl"})


@message("chubby.create_session")
@dataclass(frozen=True, slots=True)
class CreateSession:
    user: str
    nonce: str


@message("chubby.session_info")
@dataclass(frozen=True, slots=True)
class SessionInfo:
    session: int
    epoch: int
    lease_s: float


@message("chubby.keepalive")
@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Held by the master until the session lease nears its end or an event is due.
    ``ack`` is the highest event sequence number the client has seen."""

    session: int
    epoch: int
    ack: int


@message("chubby.keepalive_reply")
@dataclass(frozen=True, slots=True)
class KeepAliveReply:
    """``lease_s``: the new lease ends this long after the master *received* the
    KeepAlive, so ``send time + lease_s`` is a conservative local lease.
    ``events``: ``[seq, kind, path, detail]`` not yet acknowledged."""

    epoch: int
    lease_s: float
    events: list[list[Any]]


@message("chubby.call")
@dataclass(frozen=True, slots=True)
class Call:
    session: int
    epoch: int
    seq: int
    op: str
    args: list[Any]


@message("chubby.call_result")
@dataclass(frozen=True, slots=True)
class CallResult:
    """``cacheable``: the client may cache this read's result (no modification of the
    node is in progress, and the master now counts this session as caching it)."""

    result: Any
    cacheable: bool


@message("chubby.where_is_master")
@dataclass(frozen=True, slots=True)
class WhereIsMaster:
    pass


@message("chubby.master_info")
@dataclass(frozen=True, slots=True)
class MasterInfo:
    master: str | None
    epoch: int
    replicas: dict[str, str]
