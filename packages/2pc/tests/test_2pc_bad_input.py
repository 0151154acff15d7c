"""Bad input is refused clearly and changes nothing (issue 5, "What bad input gets").

The cores are driven directly: a commit for an unknown transaction, duplicate and
out-of-order protocol messages, a decision contradicting a recorded outcome, a lock
request from an aborted transaction, malformed requests. After each, the durable
state and the replies are checked.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import Rejected, TxnAborted
from giants.core.process import Durable, Io
from giants.twopc import (
    Ack,
    CommitTxn,
    Coordinator,
    Decision,
    Participant,
    PeerQuery,
    PeerState,
    Prepare,
    QueryOutcome,
    ReadResult,
    StatusQuery,
    TxnOutcome,
    TxnRead,
    TxnWrite,
    Vote,
    WriteAck,
)
from giants.twopc._messages import VOTE_NO, VOTE_YES


class Node:
    """A core with its durable state applied after every call, like a host."""

    def __init__(self, build: Any, node_id: str) -> None:
        self.node_id = node_id
        self.durable = Durable()
        self.build = build
        self.ids = itertools.count(1)
        self.now = 0.0
        self.core = build(self.durable.copy())
        self.call(lambda io: self.core.start(io))

    def call(self, fn: Any) -> list[Envelope]:
        io = Io(self.node_id, self.now, random.Random(0), self.ids.__next__)
        fn(io)
        for op in io.persists:
            self.durable.apply(op)
        return io.sends

    def deliver(self, body: Any, source: str = "client") -> list[Envelope]:
        env = Envelope(source, self.node_id, next(self.ids), None, body)
        return self.call(lambda io: self.core.receive(io, env))

    def restart(self) -> None:
        self.core = self.build(self.durable.copy())
        self.call(lambda io: self.core.start(io))


def shard(name: str = "shard-0") -> Node:
    return Node(lambda d: Participant(name, d), name)


def coordinator() -> Node:
    return Node(lambda d: Coordinator("coord-0", d, shards=["shard-0", "shard-1"]), "coord-0")


def bodies(sends: list[Envelope]) -> list[Any]:
    return [e.body for e in sends]


def snapshot(node: Node) -> dict[str, Any]:
    return {ns: node.durable.namespace(ns) for ns in node.durable.namespaces()}


def prepared_shard() -> Node:
    s = shard()
    assert isinstance(bodies(s.deliver(TxnWrite("t1", 1.0, "k", 5, False, 1)))[0], WriteAck)
    votes = bodies(s.deliver(Prepare("t1", ["coord-0"], ["shard-0", "shard-1"], 1), "coord-0"))
    assert votes == [Vote("t1", "shard-0", VOTE_YES, "prepared")]
    return s


def test_commit_decision_for_unknown_transaction_is_refused() -> None:
    s = shard()
    before = snapshot(s)
    assert s.deliver(Decision("nope", True), "coord-0") == []    # no ack, no state
    assert snapshot(s) == before
    # an abort for an unknown transaction is harmless: acknowledged (presumed abort)
    assert bodies(s.deliver(Decision("nope", False), "coord-0")) == [Ack("nope", "shard-0")]


def test_commit_of_transaction_no_shard_saw_aborts_cleanly() -> None:
    c = coordinator()
    sends = c.deliver(CommitTxn("ghost", ["shard-0"], [1]))
    assert bodies(sends) == [Prepare("ghost", ["coord-0"], ["shard-0"], 1)]
    s = shard()
    vote = bodies(s.deliver(sends[0].body, "coord-0"))
    assert vote[0].vote == VOTE_NO
    out = c.deliver(vote[0], "shard-0")
    assert [b for b in bodies(out) if isinstance(b, TxnOutcome)] == [
        TxnOutcome("ghost", False, vote[0].reason and f"shard-0 voted no: {vote[0].reason}")]


def test_malformed_commits_are_rejected_without_state() -> None:
    c = coordinator()
    for bad in (CommitTxn("t", [], []), CommitTxn("t", ["shard-0", "shard-0"], [1, 1]),
                CommitTxn("t", ["shard-9"], [1]), CommitTxn("t", ["shard-0"], [0]),
                CommitTxn("t", ["shard-0", "shard-1"], [1])):
        (reply,) = bodies(c.deliver(bad))
        assert isinstance(reply, ErrorReply) and isinstance(reply.exception(), Rejected)
    assert snapshot(c) == {} and c.core.status(0.0).txns == {}


def test_duplicate_prepare_and_decision_are_idempotent() -> None:
    s = prepared_shard()
    again = bodies(s.deliver(Prepare("t1", ["coord-0"], ["shard-0", "shard-1"], 1), "coord-0"))
    assert again == [Vote("t1", "shard-0", VOTE_YES, "duplicate prepare")]
    assert bodies(s.deliver(Decision("t1", True), "coord-0")) == [Ack("t1", "shard-0")]
    after = snapshot(s)
    assert after["kv"] == {"k": 5}
    assert bodies(s.deliver(Decision("t1", True), "coord-0")) == [Ack("t1", "shard-0")]
    assert snapshot(s) == after
    late = bodies(s.deliver(Prepare("t1", ["coord-0"], ["shard-0", "shard-1"], 1), "coord-0"))
    assert late[0].vote == VOTE_YES                                 # a late duplicate


def test_contradicting_decision_is_refused() -> None:
    s = prepared_shard()
    s.deliver(Decision("t1", True), "coord-0")
    before = snapshot(s)
    assert s.deliver(Decision("t1", False), "coord-0") == []
    assert snapshot(s) == before


def test_commit_before_prepare_is_refused() -> None:
    s = shard()
    s.deliver(TxnWrite("t1", 1.0, "k", 5, False, 1))
    before = snapshot(s)
    assert s.deliver(Decision("t1", True), "coord-0") == []
    assert snapshot(s) == before and s.core.status(0.0).txns["t1"]["state"] == "active"


def test_stray_votes_and_acks_change_nothing() -> None:
    c = coordinator()
    c.deliver(CommitTxn("t1", ["shard-0"], [1]))
    assert c.deliver(Vote("t1", "shard-1", VOTE_YES, ""), "shard-1") == []   # not a participant
    assert c.deliver(Vote("zz", "shard-0", VOTE_YES, ""), "shard-0") == []
    assert c.deliver(Ack("t1", "shard-0"), "shard-0") == []
    assert c.core.status(0.0).txns["t1"]["state"] == "collecting"
    assert snapshot(c) == {}


def test_lock_request_from_aborted_transaction_is_rejected() -> None:
    s = shard()
    s.deliver(TxnWrite("t1", 1.0, "k", 5, False, 1))
    s.deliver(Decision("t1", False), "coord-0")                    # the coordinator aborted it
    before = snapshot(s)
    for body in (TxnRead("t1", 1.0, "k", 2), TxnWrite("t1", 1.0, "j", 1, False, 3)):
        (reply,) = bodies(s.deliver(body))
        assert isinstance(reply, ErrorReply) and isinstance(reply.exception(), TxnAborted)
    assert snapshot(s) == before and s.core.locks.resources() == []
    # another transaction is unaffected
    (ok,) = bodies(s.deliver(TxnRead("t2", 2.0, "k", 1)))
    assert ok == ReadResult("t2", "k", False, None)


def test_malformed_operations_are_rejected() -> None:
    s = shard()
    for body in (TxnRead("t", 1.0, "", 1), TxnWrite("t", 1.0, "k" * 5000, 1, False, 1),
                 TxnWrite("t", 1.0, "k", "v" * (2 * 1024 * 1024), False, 1)):
        (reply,) = bodies(s.deliver(body))
        assert isinstance(reply, ErrorReply) and isinstance(reply.exception(), Rejected)
    (reply,) = bodies(s.deliver(QueryOutcome("t", "x")))        # a coordinator's message
    assert isinstance(reply, ErrorReply) and reply.kind == "protocol"
    assert s.core.status(0.0).txns == {}


def test_prepared_state_and_outcome_survive_restart() -> None:
    s = prepared_shard()
    s.restart()
    assert s.core.prepared() == ["t1"]
    assert s.core.locks.held("t1")                                  # the X lock is back
    assert s.deliver(TxnRead("t2", 2.0, "k", 1)) == []                 # t2 must wait ...
    after = bodies(s.deliver(Decision("t1", True), "coord-0"))
    assert after == [Ack("t1", "shard-0"), ReadResult("t2", "k", True, 5)]   # ... for t1
    s.restart()
    assert snapshot(s)["kv"] == {"k": 5} and s.core.prepared() == []


def test_peer_query_answers() -> None:
    s = prepared_shard()
    assert bodies(s.deliver(PeerQuery("t1", "shard-1"), "shard-1")) == [
        PeerState("t1", "shard-0", "prepared")]
    assert bodies(s.deliver(PeerQuery("zz", "shard-1"), "shard-1")) == [
        PeerState("zz", "shard-0", "unknown")]
    status = bodies(s.deliver(StatusQuery()))[0]
    assert status.txns["t1"]["state"] == "prepared"


def test_lost_operations_are_detected() -> None:
    """A shard that restarted lost a transaction's unprepared operations: the next
    operation (its seq leaves a gap) and the PREPARE (fewer operations than the client
    ran) both abort it instead of committing half of it."""
    s = shard()
    s.deliver(TxnWrite("t1", 1.0, "k", 5, False, 1))
    s.restart()                                              # the buffered write is gone
    (reply,) = bodies(s.deliver(TxnRead("t1", 1.0, "j", 2)))
    assert isinstance(reply, ErrorReply) and isinstance(reply.exception(), TxnAborted)
    s2 = shard()
    s2.deliver(TxnWrite("t2", 1.0, "k", 5, False, 1))
    s2.restart()
    (vote,) = bodies(s2.deliver(Prepare("t2", ["coord-0"], ["shard-0"], 1), "coord-0"))
    assert vote.vote == VOTE_NO
    s3 = shard()
    s3.deliver(TxnWrite("t3", 1.0, "k", 5, False, 1))
    assert s3.deliver(TxnWrite("t3", 1.0, "k", 5, False, 1)) == []    # a duplicate: ignored
    (vote,) = bodies(s3.deliver(Prepare("t3", ["coord-0"], ["shard-0"], 1), "coord-0"))
    assert vote.vote == VOTE_YES
