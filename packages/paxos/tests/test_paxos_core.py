"""Paper-claim tests on the Multi-Paxos core, driven by hand (no simulator).

"Paxos Made Simple" §2.2 (acceptor rules, durable state), §3 (one phase 1 for all
slots, no-op gap filling, pipelining, slot-order learning); "Paxos Made Live" §5
(leases, catch-up); and the bad-input rules: stale ballots, unknown senders and
malformed messages are refused with a log line and change nothing.
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import Any

import pytest

from giants.core.codec import DEFAULT_REGISTRY, encode
from giants.core.consensus import ConsensusConfig
from giants.core.envelope import Envelope
from giants.core.errors import NotLeader, Rejected, RemoteProtocolError
from giants.core.process import Durable, Io
from giants.paxos import MultiPaxos
from giants.paxos._messages import Accept, Accepted, CatchUpRequest, Learn, Nack, Prepare, Promise

PEERS = {"a": "a", "b": "b", "c": "c"}
_ids = itertools.count(1)


def make(node: str = "a", durable: Durable | None = None, **options: Any) -> MultiPaxos:
    return MultiPaxos(ConsensusConfig(node, dict(PEERS), options=options), durable or Durable())


def new_io(node: str = "a", now: float = 0.0) -> Io:
    return Io(node_id=node, now=now, rng=random.Random(7), next_msg_id=lambda: next(_ids))


def deliver(core: MultiPaxos, src: str, body: Any, now: float = 0.0) -> Io:
    io = new_io(core.node_id, now)
    core.receive(io, Envelope(src, core.node_id, next(_ids), None, body))
    return io


def sent(io: Io, kind: type) -> list[Envelope]:
    return [e for e in io.sends if isinstance(e.body, kind)]


def elect(core: MultiPaxos, promises: dict[str, list[Any]] | None = None) -> Io:
    """Make ``core`` leader: campaign, then promises from b and c (with ``accepted``)."""
    io = new_io(core.node_id)
    core._campaign(io)
    for peer in ("b", "c"):
        accepted = (promises or {}).get(peer, [])
        io = deliver(core, peer, Promise(core.ballot, accepted, 0, 0))
        if core.role == "leader":
            return io
    return io


def durable_after(*ios: Io) -> Durable:
    d = Durable()
    for io in ios:
        for op in io.persists:
            d.apply(op)
    return d


# -- the acceptor (§2.2) ------------------------------------------------------------------


def test_promise_is_persisted_in_the_call_that_replies() -> None:
    core = make("b")
    io = deliver(core, "a", Prepare((1, "a"), 1))
    assert [e.body for e in sent(io, Promise)] == [Promise((1, "a"), [], 0, 0)]
    assert durable_after(io).get("consensus.acc", "promised") == [1, "a"]
    # a restarted acceptor keeps its promise: a lower ballot is refused
    again = make("b", durable_after(io))
    assert again.promised == (1, "a")
    io2 = deliver(again, "c", Prepare((1, "c"), 1))  # (1, "c") > (1, "a"): ids break ties
    io3 = deliver(make("b", durable_after(io, io2)), "a", Prepare((1, "a"), 1))
    assert [e.body for e in sent(io3, Nack)] == [Nack((1, "a"), (1, "c"))]


def test_accept_is_persisted_and_acknowledged() -> None:
    core = make("b")
    io = deliver(core, "a", Accept((1, "a"), [(1, "cmd", b"x"), (2, "noop", None)], 0, 1))
    assert [e.body for e in sent(io, Accepted)] == [Accepted((1, "a"), [1, 2], 0, 1)]
    restarted = make("b", durable_after(io))
    assert restarted.log.entries[1] == ((1, "a"), "cmd", b"x")
    assert restarted.promised == (1, "a")


def test_stale_ballots_get_a_nack_and_change_nothing() -> None:
    core = make("b")
    deliver(core, "c", Prepare((5, "c"), 1))
    before = (core.promised, dict(core.log.entries))
    for body in (Prepare((4, "a"), 1), Accept((4, "a"), [(1, "cmd", b"late")], 3, 1)):
        io = deliver(core, "a", body)
        assert [e.body for e in sent(io, Nack)] == [Nack(body.ballot, (5, "c"))]
        assert io.persists == []
    assert (core.promised, dict(core.log.entries)) == before


def test_unknown_sender_is_refused_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    core = make("b")
    with caplog.at_level(logging.WARNING, logger="giants.paxos"):
        io = deliver(core, "mallory", Prepare((9, "mallory"), 1))
    assert io.sends == [] and io.persists == [] and core.promised == (0, "")
    assert "unknown sender" in caplog.text and "mallory" in caplog.text


@pytest.mark.parametrize("body", [
    Prepare((3, "c"), 1),                                   # ballot names someone else
    Prepare((0, "a"), 1),                                   # round 0 is no ballot
    Prepare((3, "a"), 0),                                   # slots start at 1
    Accept((3, "a"), [(0, "cmd", b"x")], 0, 1),             # slot 0
    Accept((3, "a"), [(1, "bogus", b"x")], 0, 1),           # unknown kind
    Accept((3, "a"), [(1, "noop", b"x")], 0, 1),            # a no-op with data
    Accept((3, "a"), [(1, "conf", b"\xc1garbage")], 0, 1),  # undecodable configuration
    Accept((3, "a"), [(1, "cmd", b"x")], -1, 1),            # negative commit
    Learn(5, None, [], []),                                 # snapshot index without data
    CatchUpRequest(0),
], ids=lambda b: type(b).__name__)
def test_malformed_messages_are_refused_and_change_nothing(
        body: Any, caplog: pytest.LogCaptureFixture) -> None:
    core = make("b")
    with caplog.at_level(logging.WARNING, logger="giants.paxos"):
        io = deliver(core, "a", body)
    assert io.sends == [] and io.persists == []
    assert core.promised == (0, "") and core.log.entries == {} and core.log.prefix == 0
    assert "rejected" in caplog.text


def test_wrong_field_types_never_reach_the_core() -> None:
    good = encode(Promise((1, "a"), [(1, 1, "a", "cmd", b"x")], 0, 0))
    assert DEFAULT_REGISTRY.decode(good) == Promise((1, "a"), [(1, 1, "a", "cmd", b"x")], 0, 0)
    bad = encode(Promise((1, "a"), [("one", 1, "a", "cmd", b"x")], 0, 0))  # type: ignore[list-item]
    with pytest.raises(RemoteProtocolError):
        DEFAULT_REGISTRY.decode(bad)


# -- phase 1 once, gap filling, pipelining (§3) ------------------------------------------


def test_new_leader_reproposes_highest_ballot_values_and_fills_gaps_with_noops() -> None:
    core = make("a")
    deliver(core, "b", Accept((1, "b"), [(1, "cmd", b"old")], 0, 1))  # a's own acceptance
    io = elect(core, {"b": [(1, 2, "c", "cmd", b"newer"), (3, 1, "b", "cmd", b"z")]})
    assert core.role == "leader"
    accepts = [e.body for e in sent(io, Accept) if e.body.entries]
    assert {e.body.ballot for e in sent(io, Accept)} == {core.ballot}
    assert accepts[0].entries == [(1, "cmd", b"newer"), (2, "noop", None), (3, "cmd", b"z")]


def test_steady_state_is_phase_2_only_and_pipelined() -> None:
    core = make("a")
    elect(core)
    slots = []
    for i in range(5):  # five calls (five client requests arriving one by one)
        io = new_io()
        core.propose(io, f"c{i}".encode())
        assert sent(io, Prepare) == []
        slots += [e.body.entries[0][0] for e in sent(io, Accept) if e.target == "b"]
    assert slots == [1, 2, 3, 4, 5]  # five in flight before any Accepted came back
    io = deliver(core, "b", Accepted(core.ballot, [1, 2, 3, 4, 5], 0, 0))
    assert [e.index for e in core.take_ready().entries] == [1, 2, 3, 4, 5]


def test_pipeline_window_is_alpha() -> None:
    core = make("a", alpha=2)
    elect(core)
    io = new_io()
    for i in range(5):  # one call with five requests: one Accept per peer carries them
        core.propose(io, f"c{i}".encode())
    to_b = [e.body for e in sent(io, Accept) if e.target == "b"]
    assert [[s for s, _, _ in m.entries] for m in to_b] == [[1, 2]]
    io = deliver(core, "b", Accepted(core.ballot, [1], 0, 0))
    assert [e.body.entries[0][0] for e in sent(io, Accept) if e.target == "b" and e.body.entries] == [3]


def test_learner_applies_in_slot_order_and_only_leader_ballot_values() -> None:
    core = make("b")
    deliver(core, "a", Accept((1, "a"), [(2, "cmd", b"two")], 0, 1))
    assert core.take_ready().entries == []
    deliver(core, "a", Accept((1, "a"), [(1, "cmd", b"one")], 2, 1))
    assert [(e.index, e.command) for e in core.take_ready().entries] == [(1, b"one"), (2, b"two")]


def test_follower_is_told_values_it_accepted_in_another_ballot() -> None:
    core = make("b")
    deliver(core, "a", Accept((1, "a"), [(1, "cmd", b"stale")], 0, 1))
    # leader c chose another value at slot 1 while b was away; its commit does not apply
    deliver(core, "c", Accept((2, "c"), [], 1, 1))
    assert core.log.prefix == 0
    deliver(core, "c", Learn(0, None, [], [(1, "cmd", b"chosen")]))
    assert [(e.index, e.command) for e in core.take_ready().entries] == [(1, b"chosen")]


def test_not_leader_is_definite_and_hints_the_leader() -> None:
    core = make("b")
    deliver(core, "a", Accept((1, "a"), [], 0, 1))
    with pytest.raises(NotLeader) as info:
        core.propose(new_io("b"), b"x")
    assert info.value.hint == "a"


# -- reads, leases, stepping down ---------------------------------------------------------


def test_read_barrier_waits_for_a_heartbeat_round_started_after_it() -> None:
    core = make("a")
    elect(core)
    core.take_ready()
    first = core.hb_seq  # the round the new leader started; in flight
    io = new_io()
    core.read_barrier(io, token=1)
    assert sent(io, Accept) == []  # the read joins the next round
    io = deliver(core, "b", Accepted(core.ballot, [], 0, first))
    assert core.take_ready().reads == []  # that round began before the read
    nxt = [e.body for e in sent(io, Accept) if e.target == "b"][-1]
    assert nxt.seq == first + 1
    deliver(core, "c", Accepted(core.ballot, [], 0, first))  # stale again: still waiting
    assert core.take_ready().reads == []
    deliver(core, "b", Accepted(core.ballot, [], 0, nxt.seq))
    assert core.take_ready().reads == [(1, 0)]


def test_reads_fail_when_the_leader_is_deposed() -> None:
    core = make("a")
    elect(core)
    core.read_barrier(new_io(), token=7)
    deliver(core, "b", Nack(core.ballot, (9, "c")))
    assert core.role == "follower"
    assert core.take_ready().failed_reads == [7]


def test_lease_reads_are_local_and_acceptors_refuse_prepares_during_a_lease() -> None:
    core = make("a", lease_s=1.0)
    elect(core)
    core.read_barrier(new_io(now=10.0), token=1)
    io = deliver(core, "b", Accepted(core.ballot, [], 0, core.hb_seq), now=10.0)
    seq = [e.body for e in sent(io, Accept)][-1].seq  # the round for the read, at t=10
    deliver(core, "b", Accepted(core.ballot, [], 0, seq), now=10.01)
    assert core.take_ready().reads == [(1, 0)]
    core.read_barrier(new_io(now=10.5), token=2)  # within the lease: no round needed
    assert core.take_ready().reads == [(2, 0)]
    io = new_io(now=11.5)
    core.read_barrier(io, token=3)  # the lease ran out: back to a quorum round
    assert core.take_ready().reads == []
    follower = make("b", lease_s=1.0)
    deliver(follower, "a", Accept((1, "a"), [], 0, 1), now=10.0)
    io = deliver(follower, "c", Prepare((2, "c"), 1), now=10.5)
    assert io.sends == [] and follower.promised == (1, "a")
    io = deliver(follower, "c", Prepare((2, "c"), 1), now=11.2)  # lease guard over
    assert sent(io, Promise) and follower.promised == (2, "c")


def test_membership_changes_are_checked_and_one_at_a_time() -> None:
    core = make("a", alpha=4)
    elect(core)
    with pytest.raises(Rejected):
        core.change_membership(new_io(), "promote", "d")
    with pytest.raises(Rejected):
        core.change_membership(new_io(), "remove", "a")
    core.change_membership(new_io(), "add_learner", "d", "d")
    with pytest.raises(Rejected):
        core.change_membership(new_io(), "add_learner", "e", "e")
    with pytest.raises(NotLeader):
        make("b").change_membership(new_io("b"), "add_learner", "d", "d")
