"""The replicated coordinator's decision log across a restart (Gray & Lamport 2006 §4).

The decision log lives in the consensus core's snapshot and log; a coordinator replica
rebuilt from them must know every decision. The snapshot layout (``{"open": [[txn,
commit, inform]], "done": [[txn, commit]]}``) is durable, so one written by an earlier
version restores unchanged; on taking leadership the replica re-sends the decisions not
yet acknowledged, and answers in-doubt participants from what it restored.
"""

from __future__ import annotations

import random

import msgpack

from giants.core.envelope import Envelope
from giants.core.process import Durable, Io
from giants.core.solo import solo_factory
from giants.twopc import Ack, Decision, QueryOutcome, ReplicatedCoordinator


def _io() -> Io:
    ids = iter(range(1, 1_000_000))
    return Io(node_id="coord-0", now=0.0, rng=random.Random(0), next_msg_id=lambda: next(ids))


def _restored(snapshot_every: int = 500) -> ReplicatedCoordinator:
    snap = {"open": [["t-open", True, ["shard-0", "shard-1"]]],
            "done": [["t-commit", True], ["t-abort", False]]}
    decide = msgpack.packb(["decide", "t-after", False, []], use_bin_type=True)
    durable = Durable({"consensus.snap": {"snap": [4, msgpack.packb(snap, use_bin_type=True)]},
                       "consensus.log": {5: [1, decide]}})
    return ReplicatedCoordinator("coord-0", durable, peers={"coord-0": "coord-0"},
                                 consensus=solo_factory, snapshot_every=snapshot_every)


def test_a_decision_log_snapshot_restores_and_open_decisions_are_resent() -> None:
    coord = _restored()
    io = _io()
    coord.start(io)
    assert coord.applier.applied_index == 5 and coord.applier.leading
    assert [(e.target, e.body) for e in io.sends] == [
        ("shard-0", Decision("t-open", True)), ("shard-1", Decision("t-open", True))]
    assert coord.log.known("t-open") is True
    io = _io()
    for n, txn in enumerate(("t-commit", "t-abort", "t-after", "t-unknown")):
        coord.receive(io, Envelope("shard-2", "coord-0", n + 1, None,
                                   QueryOutcome(txn, "shard-2")))
    answers = [e.body for e in io.sends if isinstance(e.body, Decision)]
    assert answers == [Decision("t-commit", True), Decision("t-abort", False),
                       Decision("t-after", False),
                       Decision("t-unknown", False)]            # the last: presumed abort


def test_acks_forget_through_the_log_and_the_log_compacts() -> None:
    coord = _restored(snapshot_every=2)
    coord.start(_io())
    io = _io()
    for n, shard in enumerate(("shard-0", "shard-1")):
        coord.receive(io, Envelope(shard, "coord-0", n + 1, None, Ack("t-open", shard)))
    assert coord.log.open == {} and coord.log.known("t-open") is True
    assert coord.applier.applied_index == 6
    snaps = [op for op in io.persists if getattr(op, "ns", "") == "consensus.snap"]
    assert len(snaps) == 1 and snaps[0].value[0] == 6
    restored = msgpack.unpackb(snaps[0].value[1], raw=False)
    assert restored == {"open": [], "done": [["t-commit", True], ["t-abort", False],
                                            ["t-after", False], ["t-open", True]]}
