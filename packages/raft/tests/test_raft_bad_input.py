"""Bad input to a Raft core: rejected with a log line and a probe, state intact.

Unknown senders, stale terms, indexes beyond the log and malformed bodies change no
term, vote, role, log, commit index or durable byte. (Malformed *client commands* are
covered by the conformance suite's ``check_rejects_malformed``; bytes that do not decode
never reach a core: the codec raises ``RemoteProtocolError``.)
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack
import pytest

from giants.core.envelope import Envelope, decode_envelope
from giants.core.errors import RemoteProtocolError
from giants.raft._messages import (
    AppendEntries,
    AppendReply,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    RequestVote,
    SnapshotReply,
)
from giants.raft.testing import CoreNet


def fingerprint(net: CoreNet, node: str) -> tuple[Any, ...]:
    c = net.core(node)
    return (c.term, c.vote, c.role, c.leader(), [list(e) for e in c.log.entries], c.commit,
            c.log.base_index, dict(c.voters), net.durable[node].copy()._data)


def settled() -> CoreNet:
    net = CoreNet(3)
    net.elect("n0")
    net.propose("n0", b"a")
    net.deliver()
    net.tick("n0", 3)
    net.deliver()
    return net


def test_unknown_sender_is_rejected_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    net = settled()
    before = fingerprint(net, "n1")
    with caplog.at_level(logging.INFO, logger="giants.raft"):
        io = net.send_raw(Envelope("intruder", "n1", 1, None,
                                   AppendEntries(9, 2, 1, [[9, b"evil"]], 3, 0)))
    assert not io.sends and not io.persists
    assert fingerprint(net, "n1") == before
    assert "unknown_sender" in caplog.text


def test_stale_term_is_answered_with_our_term_and_changes_nothing() -> None:
    net = settled()
    net.partition(["n0"])
    net.elect("n1")                       # term 2 among n1, n2
    net.heal()
    before = fingerprint(net, "n1")
    io = net.send_raw(Envelope("n0", "n1", 1, None, AppendEntries(1, 2, 1, [[1, b"old"]], 2, 0)))
    assert [type(e.body) for e in io.sends] == [HeartbeatReply]
    assert io.sends[0].body.term == 2 and not io.persists
    assert fingerprint(net, "n1") == before
    net.deliver()                         # the old leader learns of term 2 and steps down
    assert net.core("n0").role == "follower" and net.core("n0").term == 2


def test_index_beyond_the_log_is_refused_with_a_hint() -> None:
    net = settled()
    before = fingerprint(net, "n1")
    last = net.core("n1").log.last_index
    io = net.send_raw(Envelope("n0", "n1", 1, None, AppendEntries(1, 50, 1, [[1, b"z"]], 50, 0)))
    reply = io.sends[0].body
    assert isinstance(reply, AppendReply) and not reply.success
    assert reply.conflict_index == last + 1 and not io.persists
    assert fingerprint(net, "n1") == before


def test_acknowledgement_beyond_the_leaders_log_is_rejected() -> None:
    net = settled()
    leader = net.core("n0")
    before = (leader.progress["n1"].match, leader.commit)
    io = net.send_raw(Envelope("n1", "n0", 1, None, AppendReply(1, True, 999, 0, 0, 0)))
    assert not io.sends and not io.persists
    assert (leader.progress["n1"].match, leader.commit) == before


MALFORMED: list[Any] = [
    AppendEntries(1, 2, 1, [["one", b"x"]], 0, 0),          # term not an int
    AppendEntries(1, 2, 1, [[1]], 0, 0),                     # not [term, data]
    AppendEntries(1, 2, 1, [[1, 17]], 0, 0),                 # data neither bytes, None, config
    AppendEntries(1, 2, 1, [[1, {"voters": 3}]], 0, 0),      # broken configuration
    AppendEntries(1, 2, 1, [[2, b"x"]], 0, 0),               # entry term above message term
    AppendEntries(2, 2, 2, [[1, b"x"]], 0, 0),               # entry term below prev term
    AppendEntries(1, 0, 1, [], 0, 0),                        # index 0 has term 0
    AppendEntries(1, -1, 0, [], 0, 0),                       # negative index
    RequestVote(0, 0, 0, False, False),                      # term 0
    RequestVote(1, 5, 3, False, False),                      # last term above term
    Heartbeat(1, -4, 0),
    InstallSnapshot(1, 0, 1, {"n0": "n0"}, {}, 0, b"", True),
    InstallSnapshot(1, 5, 1, {}, {}, 0, b"", True),          # no voters
    SnapshotReply(1, 0, 0, True),
]


@pytest.mark.parametrize("body", MALFORMED, ids=lambda b: type(b).__name__)
def test_malformed_bodies_change_nothing(body: Any) -> None:
    net = settled()
    for target, source in (("n1", "n0"), ("n0", "n1")):
        before = fingerprint(net, target)
        io = net.run(target, lambda io, t=target, s=source: net.core(t).receive(
            io, Envelope(s, t, 1, None, body)))
        assert not io.sends and not io.persists, (body, io.sends)
        assert fingerprint(net, target) == before


def test_undecodable_frames_never_reach_a_core() -> None:
    """Wrong field types fail in the codec with RemoteProtocolError."""
    bad = msgpack.packb(["n0", "n1", 1, None, ["raft.vote", "three", 0, 0, False, False]])
    with pytest.raises(RemoteProtocolError):
        decode_envelope(bad)
    worse = msgpack.packb(["n0", "n1", 1, None, ["raft.no_such_message", 1]])
    with pytest.raises(RemoteProtocolError):
        decode_envelope(worse)


def test_snapshot_reply_offset_beyond_the_snapshot_is_rejected() -> None:
    net = CoreNet(3, options={"snapshot_trailing_entries": 0, "snapshot_chunk_bytes": 4})
    net.elect("n0")
    net.deliver()
    net.partition(["n2"])
    net.propose("n0", b"v")
    net.deliver()
    leader = net.core("n0")
    net.run("n0", lambda io: leader.compact(io, leader.commit, b"0123456789"))
    net.heal()
    net.tick("n0", 12)                    # n2 acknowledged nothing: probe, find it compacted
    net.queue.clear()                     # hold the chunk; the leader now waits for n2
    pr = leader.progress["n2"]
    assert pr.state == "snapshot"
    io = net.send_raw(Envelope("n2", "n0", 1, None,
                               SnapshotReply(1, leader.snapshot[0], 10_000, False)))
    assert not io.sends and pr.snap_offset == 0
