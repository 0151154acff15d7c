"""Raft's wire messages (Ongaro & Ousterhout, ATC 2014, Fig. 2; dissertation ch. 3-6).

The paper's two RPCs, RequestVote and AppendEntries, plus what the dissertation adds:
InstallSnapshot (§5 of the paper / ch. 5, sent in chunks), TimeoutNow (leadership
transfer, §3.10), and a separate Heartbeat carrying no log check, so a heartbeat never
disturbs pipelined AppendEntries (as in etcd-io/raft). The sender's id is the
envelope's ``source``; no message repeats it.

A log entry on the wire (and on disk) is ``[term, data]`` where ``data`` is the client
command (``bytes``), ``None`` for a leader's no-op, or a configuration
``{"voters": {id: addr}, "learners": {id: addr}}``. The codec checks field types; the
core checks the shape of entries and index ranges (``_validate``).

``seq`` on AppendEntries / Heartbeat is the leader's heartbeat sequence number, echoed
in replies: a read registered at ``seq`` s is safe once a quorum acknowledged a message
carrying ``seq >= s`` (ReadIndex, dissertation §6.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, final

from giants.core.codec import message

__all__ = [
    "RequestVote",
    "VoteReply",
    "AppendEntries",
    "AppendReply",
    "Heartbeat",
    "HeartbeatReply",
    "InstallSnapshot",
    "SnapshotReply",
    "TimeoutNow",
    "RAFT_MESSAGES",
]


@final
@message("raft.vote")
@dataclass(frozen=True, slots=True)
class RequestVote:
    """Ask for a vote in ``term``. ``pre_vote``: only ask whether the vote *would* be
    granted (§9.6 of the dissertation), no state changes. ``transfer``: sent because the
    leader asked us to take over (TimeoutNow), so voters skip the leader-stickiness check."""

    term: int
    last_index: int
    last_term: int
    pre_vote: bool
    transfer: bool


@final
@message("raft.vote_reply")
@dataclass(frozen=True, slots=True)
class VoteReply:
    term: int
    granted: bool
    pre_vote: bool


@final
@message("raft.append")
@dataclass(frozen=True, slots=True)
class AppendEntries:
    term: int
    prev_index: int
    prev_term: int
    entries: list[Any]
    commit: int
    seq: int


@final
@message("raft.append_reply")
@dataclass(frozen=True, slots=True)
class AppendReply:
    """``success``: ``index`` is the last index now known to match the leader. Else
    ``index`` is the rejected ``prev_index`` and ``conflict_index``/``conflict_term`` the
    fast back-off hint (§5.3): the follower's term at ``prev_index`` and the first index
    it holds of that term, or ``conflict_term`` 0 and its last index + 1."""

    term: int
    success: bool
    index: int
    conflict_index: int
    conflict_term: int
    seq: int


@final
@message("raft.heartbeat")
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """``commit`` is ``min(follower's match, leader's commit)``: safe with no log check."""

    term: int
    commit: int
    seq: int


@final
@message("raft.heartbeat_reply")
@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    term: int
    seq: int


@final
@message("raft.snapshot")
@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk of the leader's snapshot at ``last_index`` (paper §7, Fig. 13)."""

    term: int
    last_index: int
    last_term: int
    voters: dict[str, str]
    learners: dict[str, str]
    offset: int
    data: bytes
    done: bool


@final
@message("raft.snapshot_reply")
@dataclass(frozen=True, slots=True)
class SnapshotReply:
    """``next_offset``: the byte the follower wants next; ``done``: installed (or already
    covered by its commit index)."""

    term: int
    last_index: int
    next_offset: int
    done: bool


@final
@message("raft.timeout_now")
@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: start an election now (dissertation §3.10)."""

    term: int


RAFT_MESSAGES: tuple[type, ...] = (
    RequestVote, VoteReply, AppendEntries, AppendReply, Heartbeat, HeartbeatReply,
    InstallSnapshot, SnapshotReply, TimeoutNow,
)
