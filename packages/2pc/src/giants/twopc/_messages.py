"""Wire messages of two-phase commit and of the sharded transactional KV built on it.

Gray (1978) "Notes on Data Base Operating Systems" §5.8.3 and Mohan, Lindsay,
Obermarck, "Transaction Management in the R* Distributed Database Management System"
(TODS 1986) §2 name the protocol's messages: PREPARE, the participant's VOTE (YES / NO
/ READ-ONLY), the coordinator's COMMIT / ABORT decision, and the ACK that lets the
coordinator forget. Inquiries from in-doubt participants (``QueryOutcome``) and the
cooperative-termination exchange between participants (``PeerQuery`` / ``PeerState``,
Bernstein, Hadzilacos, Goodman 1987 §7.4) complete it.

Execution-phase requests from a client to a shard (``TxnRead``, ``TxnWrite``,
``TxnRollback``) and the client's ``CommitTxn`` to the coordinator are requests answered
with their reply or an ``ErrorReply``; protocol messages between coordinator and
participants are one-way sends (matched by transaction id), so retransmissions and
duplicates are harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from giants.core.codec import message

__all__ = [
    "TxnRead", "ReadResult", "TxnWrite", "WriteAck", "TxnRollback", "RollbackAck",
    "CommitTxn", "TxnOutcome", "Prepare", "Vote", "Decision", "Ack", "QueryOutcome",
    "PeerQuery", "PeerState", "StatusQuery", "StatusReply", "WaitsFor", "AbortVictim",
    "VOTE_YES", "VOTE_NO", "VOTE_READ_ONLY",
]

VOTE_YES = "yes"
VOTE_NO = "no"
VOTE_READ_ONLY = "read-only"


# -- execution phase: client -> shard ----------------------------------------------------

@message("2pc.read")
@dataclass(frozen=True, slots=True)
class TxnRead:
    """Read ``key`` under a shared lock. ``ts`` is the transaction's timestamp (its age
    for wait-die / wound-wait; kept across retries of the same transaction). ``seq``
    numbers the transaction's operations at this shard from 1: a duplicate is ignored,
    and a shard that lost earlier operations in a crash notices the gap and aborts."""

    txn: str
    ts: float
    key: str
    seq: int


@message("2pc.read_result")
@dataclass(frozen=True, slots=True)
class ReadResult:
    txn: str
    key: str
    found: bool
    value: Any


@message("2pc.write")
@dataclass(frozen=True, slots=True)
class TxnWrite:
    """Write ``value`` to ``key`` (``delete``: remove it) under an exclusive lock; the
    write is buffered until commit."""

    txn: str
    ts: float
    key: str
    value: Any
    delete: bool
    seq: int


@message("2pc.write_ack")
@dataclass(frozen=True, slots=True)
class WriteAck:
    txn: str
    key: str


@message("2pc.rollback")
@dataclass(frozen=True, slots=True)
class TxnRollback:
    """The client abandons the transaction before asking to commit it."""

    txn: str


@message("2pc.rollback_ack")
@dataclass(frozen=True, slots=True)
class RollbackAck:
    txn: str


# -- commit: client -> coordinator -------------------------------------------------------

@message("2pc.commit")
@dataclass(frozen=True, slots=True)
class CommitTxn:
    """Commit ``txn``, which touched the shards named in ``participants``, running
    ``ops[i]`` operations at ``participants[i]`` (a shard that executed fewer lost them
    in a crash and votes NO). Retrying with the same ``txn`` is safe: the coordinator
    answers a decided transaction from its log."""

    txn: str
    participants: list[str]
    ops: list[int]


@message("2pc.outcome")
@dataclass(frozen=True, slots=True)
class TxnOutcome:
    txn: str
    committed: bool
    reason: str


# -- the protocol: coordinator <-> participants ------------------------------------------

@message("2pc.prepare")
@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1. ``coordinators`` are the node ids to ask for the outcome (one for the
    plain coordinator, the replica group for the replicated one)."""

    txn: str
    coordinators: list[str]
    participants: list[str]
    ops: int           # operations the client ran at this participant


@message("2pc.vote")
@dataclass(frozen=True, slots=True)
class Vote:
    txn: str
    participant: str
    vote: str          # VOTE_YES / VOTE_NO / VOTE_READ_ONLY
    reason: str


@message("2pc.decision")
@dataclass(frozen=True, slots=True)
class Decision:
    """Phase 2: the outcome. Idempotent at the participant."""

    txn: str
    commit: bool


@message("2pc.ack")
@dataclass(frozen=True, slots=True)
class Ack:
    txn: str
    participant: str


@message("2pc.query")
@dataclass(frozen=True, slots=True)
class QueryOutcome:
    """An in-doubt participant asks the coordinator; answered with a ``Decision`` once
    one exists (presumed abort: no record and no round in progress means abort)."""

    txn: str
    participant: str


@message("2pc.peer_query")
@dataclass(frozen=True, slots=True)
class PeerQuery:
    """Cooperative termination: a blocked participant asks another participant."""

    txn: str
    asker: str


@message("2pc.peer_state")
@dataclass(frozen=True, slots=True)
class PeerState:
    """``state``: ``committed`` / ``aborted`` (the asker may adopt it) or ``prepared``
    (this peer is in doubt too)."""

    txn: str
    peer: str
    state: str


# -- global deadlock detection ---------------------------------------------------------------

@message("2pc.waits_for")
@dataclass(frozen=True, slots=True)
class WaitsFor:
    """A shard's local waits-for graph (txn -> txns it waits for) and the timestamps of
    the transactions in it, reported to the coordinator's global deadlock detector."""

    shard: str
    edges: dict[str, list[str]]
    ts: dict[str, float]


@message("2pc.abort_victim")
@dataclass(frozen=True, slots=True)
class AbortVictim:
    """The detector chose ``txn`` as the victim of a cycle spanning shards."""

    txn: str
    reason: str


# -- observation ---------------------------------------------------------------------------

@message("2pc.status")
@dataclass(frozen=True, slots=True)
class StatusQuery:
    pass


@message("2pc.status_reply")
@dataclass(frozen=True, slots=True)
class StatusReply:
    """``txns`` maps a transaction id to its state here: ``{"state": "prepared",
    "blocked": True, "in_doubt_s": 3.2}``; ``info`` holds role-specific facts."""

    node: str
    role: str
    txns: dict[str, dict[str, Any]]
    info: dict[str, Any]
