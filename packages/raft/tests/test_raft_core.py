"""Paper-claim unit tests on the sans-I/O Raft core, driven by hand (``CoreNet``).

Sections cite Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm
(Extended Version)" (§N), and Ongaro's dissertation (thesis §N).
"""

from __future__ import annotations

import pytest

from giants.core.errors import LocalProtocolError, NotLeader, Rejected
from giants.core.process import Put
from giants.raft._core import CANDIDATE, FOLLOWER, LEADER, PRE_CANDIDATE
from giants.raft._messages import AppendEntries, AppendReply, Heartbeat, RequestVote, VoteReply
from giants.raft.testing import CoreNet


def committed_commands(net: CoreNet, node: str) -> list[bytes]:
    core = net.core(node)
    return [core.log.entry(i)[1] for i in range(core.log.base_index + 1, core.commit + 1)
            if isinstance(core.log.entry(i)[1], bytes)]


def test_election_randomized_timeout_and_majority_vote() -> None:
    """§5.2: a follower that hears nothing times out, wins a majority and leads."""
    net = CoreNet(3)
    net.elect("n0")
    assert net.core("n0").term == 1
    assert net.leaders() == ["n0"]
    net.deliver()
    assert net.core("n1").leader() == "n0" and net.core("n2").leader() == "n0"


def test_timeouts_are_randomized_within_range() -> None:
    """§5.2: election timeouts are drawn from [T, 2T)."""
    net = CoreNet(1, options={"election_ticks": 10, "heartbeat_ticks": 2})
    seen = set()
    for _ in range(200):
        net.run("n0", net.core("n0")._reset_election_timer)
        seen.add(net.core("n0")._timeout)
    assert min(seen) >= 10 and max(seen) <= 19 and len(seen) > 5


def test_vote_is_persisted_before_the_reply() -> None:
    """Fig. 2: currentTerm and votedFor are durable before answering RequestVote."""
    net = CoreNet(3, options={"pre_vote": False})
    net.tick("n0", 40)
    req = next(e for e in net.take("n0") if e.target == "n1")
    io = net.send_raw(req)
    assert isinstance(io.sends[0].body, VoteReply) and io.sends[0].body.granted
    assert Put("consensus.hard", "hs", [1, "n0"]) in io.persists


def test_one_vote_per_term() -> None:
    """§5.2: each server votes for at most one candidate per term."""
    net = CoreNet(3, options={"pre_vote": False})
    voter = net.core("n2")
    net.run("n2", lambda io: None)
    for cand in ("n0", "n1"):
        from giants.core.envelope import Envelope
        io = net.send_raw(Envelope(cand, "n2", 1, None, RequestVote(1, 0, 0, False, False)))
        granted = io.sends[0].body.granted
        assert granted == (cand == "n0")
    assert voter.vote == "n0"


def test_election_restriction_rejects_stale_log() -> None:
    """§5.4.1: a voter denies its vote to a candidate whose log is less up-to-date."""
    net = CoreNet(3, options={"pre_vote": False, "check_quorum": False})
    net.elect("n0")
    net.propose("n0", b"x")
    net.deliver()
    from giants.core.envelope import Envelope
    stale = RequestVote(5, 1, 1, False, False)   # only the no-op: behind n1's log
    io = net.send_raw(Envelope("n2", "n1", 99, None, stale))
    reply = io.sends[0].body
    assert isinstance(reply, VoteReply) and not reply.granted


def test_commit_only_current_term_entries_by_counting() -> None:
    """§5.4.2 / Fig. 8: an entry of an earlier term is not committed by counting
    replicas; it commits once an entry of the current term does."""
    net = CoreNet(3, options={"max_batch_entries": 1})
    net.elect("n0")
    net.deliver()
    net.partition(["n0"])
    net.propose("n0", b"old")            # term 1, index 2, only on n0
    net.deliver()
    net.crash("n0")
    net.heal()
    net.age()                             # n1 wins term 2 but its appends are lost
    for _ in range(100):
        net.tick("n1")
        net.deliver(drop=lambda e: isinstance(e.body, AppendEntries))
        if net.core("n1").role == LEADER:
            break
    assert net.core("n1").term == 2
    net.crash("n1")
    net.restart("n0")
    leader = net.core("n0")
    net.age()
    for _ in range(200):                  # n0 (longer log) wins term 3; appends held back
        net.tick("n0")
        net.deliver(drop=lambda e: isinstance(e.body, AppendEntries))
        if leader.role == LEADER:
            break
    assert leader.role == LEADER and leader.term == 3
    assert leader.log.term_at(2) == 1 and leader.commit < 2
    for _ in range(5):                    # replicate, but hold back every term-3 entry
        net.tick("n0", 3)
        net.deliver(drop=lambda e: isinstance(e.body, AppendEntries)
                    and net.core("n2").log.last_index >= 2
                    and any(entry[0] == 3 for entry in e.body.entries))
    assert leader.progress["n2"].match == 2   # a majority (n0, n2) stores the term-1 entry
    assert leader.commit < 2, "a term-1 entry was committed by counting replicas in term 3"
    net.tick("n0", 3)
    net.deliver()                         # the term-3 no-op reaches n2 and commits
    assert leader.commit == 3 and leader.log.term_at(3) == 3
    assert committed_commands(net, "n0") == [b"old"]


def test_fast_back_off_uses_the_conflict_term() -> None:
    """§5.3: a rejection names the conflicting term and its first index, so the leader
    skips a whole term per round trip instead of one entry."""
    net = CoreNet(3)
    net.elect("n0")
    net.deliver()
    net.partition(["n0"])
    for _ in range(20):                      # term-1 entries that never commit
        net.propose("n0", b"stray")
    net.deliver()
    net.crash("n0")
    net.heal()
    net.elect("n1")                          # term 2
    for _ in range(5):
        net.propose("n1", b"good")
    net.deliver()
    net.restart("n0")
    rejections = 0
    for _ in range(10):
        net.tick("n1", 3)
        rejections += sum(1 for e in net.queue if e.source == "n0"
                          and isinstance(e.body, AppendReply) and not e.body.success)
        net.deliver(drop=lambda e: False)
        if net.core("n0").log.last_index == net.core("n1").log.last_index:
            break
    assert [e[1] for e in net.core("n0").log.entries][-5:] == [b"good"] * 5
    assert b"stray" not in [e[1] for e in net.core("n0").log.entries]
    assert rejections <= 2, f"{rejections} round trips to skip one term"


def test_log_matching_truncates_conflicting_suffix() -> None:
    """§5.3: a follower deletes a conflicting entry and all that follow it, on disk too."""
    net = CoreNet(3)
    net.elect("n0")
    net.deliver()
    net.partition(["n0"])
    net.propose("n0", b"x")
    net.propose("n0", b"y")
    net.deliver()                         # lost: n0 is cut off
    net.crash("n0")
    net.heal()
    net.elect("n1")
    net.propose("n1", b"z")
    net.deliver()
    net.restart("n0")
    net.tick("n1", 3)
    net.deliver()
    n0 = net.core("n0")
    assert [e[1] for e in n0.log.entries] == [e[1] for e in net.core("n1").log.entries]
    on_disk = [v[1] for _, v in net.durable["n0"].items("consensus.log")]
    assert b"x" not in on_disk and b"y" not in on_disk and on_disk[-1] == b"z"


def test_pre_vote_keeps_partitioned_node_from_bumping_its_term() -> None:
    """Thesis §9.6: a node cut off runs pre-votes that fail; its term stays put, so it
    does not depose the leader when it returns."""
    net = CoreNet(3)
    net.elect("n0")
    net.deliver()
    term = net.core("n0").term
    net.partition(["n2"])
    for _ in range(400):
        for n in ("n0", "n1", "n2"):
            net.tick(n)
        net.deliver()
    assert net.core("n2").term == term
    assert net.core("n2").role in (PRE_CANDIDATE, FOLLOWER)
    net.heal()
    net.tick("n0", 3)
    net.deliver()
    assert net.leaders() == ["n0"] and net.core("n0").term == term


def test_check_quorum_steps_down_a_leader_without_majority() -> None:
    """Thesis §6.2: a leader that hears from no majority for an election timeout steps down."""
    net = CoreNet(3)
    net.elect("n0")
    net.deliver()
    net.partition(["n0"])
    for _ in range(40):
        net.tick("n0")
        net.deliver()
    assert net.core("n0").role == FOLLOWER


def test_vote_requests_ignored_while_leader_is_live() -> None:
    """Thesis §4.2.3: a server that heard from a leader within the minimum election
    timeout ignores RequestVote (a removed server cannot disrupt the cluster)."""
    net = CoreNet(3, options={"pre_vote": False})
    net.elect("n0")
    net.deliver()
    from giants.core.envelope import Envelope
    io = net.send_raw(Envelope("n2", "n1", 1, None, RequestVote(9, 100, 9, False, False)))
    assert not io.sends and net.core("n1").term == 1 and net.core("n1").leader() == "n0"


def test_restart_recovers_term_vote_and_log() -> None:
    """Fig. 2: term, vote and log survive a crash; commit is relearned."""
    net = CoreNet(3)
    net.elect("n0")
    for i in range(5):
        net.propose("n0", f"c{i}".encode())
    net.deliver()
    before = (net.core("n1").term, net.core("n1").vote, list(net.core("n1").log.entries))
    net.crash("n1")
    net.restart("n1")
    after = net.core("n1")
    assert (after.term, after.vote, after.log.entries) == before
    net.tick("n0", 3)
    net.deliver()
    assert committed_commands(net, "n1") == [f"c{i}".encode() for i in range(5)]


def test_snapshot_is_sent_in_chunks_and_installed() -> None:
    """§7, Fig. 13: a follower behind the leader's compacted log gets InstallSnapshot
    chunks (offset, data, done) and keeps nothing that conflicts."""
    net = CoreNet(3, options={"snapshot_chunk_bytes": 16, "snapshot_trailing_entries": 0})
    net.elect("n0")
    net.deliver()
    net.partition(["n2"])
    for i in range(10):
        net.propose("n0", f"v{i}".encode())
    net.deliver()
    leader = net.core("n0")
    leader.take_ready()
    state = b"S" * 100
    net.run("n0", lambda io: leader.compact(io, leader.commit, state))
    assert leader.log.base_index == leader.commit
    net.heal()
    chunks = []

    def watch(env: object) -> bool:
        body = getattr(env, "body", None)
        if type(body).__name__ == "InstallSnapshot":
            chunks.append(body)
        return False

    for _ in range(30):
        net.tick("n0", 3)
        net.deliver(drop=watch)
    n2 = net.core("n2")
    assert len({c.offset for c in chunks}) >= 100 // 16
    ready = n2.take_ready()
    assert n2.snapshot is not None and n2.snapshot[4] == state
    assert ready.snapshot == (leader.snapshot[0], state)
    assert n2.log.base_index == leader.snapshot[0]


def test_leadership_transfer_with_timeout_now() -> None:
    """Thesis §3.10: the leader catches the target up and sends TimeoutNow; the target
    wins at once (voters skip the live-leader check for a transfer)."""
    net = CoreNet(3)
    net.elect("n0")
    net.propose("n0", b"a")
    net.deliver()
    net.run("n0", lambda io: net.core("n0").change_membership(io, "transfer_leader", "n2"))
    with pytest.raises(NotLeader):
        net.propose("n0", b"during")
    net.deliver()
    assert net.leaders() == ["n2"]
    assert net.core("n2").term == 2


def test_membership_learner_then_promote_then_remove_leader() -> None:
    """Thesis §4.1-4.2: single-server changes; a learner catches up before promotion;
    one change at a time; the removed leader steps down once the change commits."""
    net = CoreNet(3, learners=1)
    net.elect("n0")
    net.deliver()
    leader = net.core("n0")
    with pytest.raises(Rejected):
        net.run("n0", lambda io: leader.change_membership(io, "promote", "l0"))
    net.run("n0", lambda io: leader.change_membership(io, "add_learner", "l0", "l0"))
    with pytest.raises(Rejected):    # the previous change is not committed yet
        net.run("n0", lambda io: leader.change_membership(io, "remove", "n1"))
    for i in range(5):
        net.propose("n0", f"w{i}".encode())
    net.deliver()
    assert "l0" in net.core("l0").learners and net.core("l0").log.last_index == leader.log.last_index
    net.run("n0", lambda io: leader.change_membership(io, "promote", "l0"))
    net.deliver()
    assert set(leader.voters) == {"n0", "n1", "n2", "l0"}
    net.run("n0", lambda io: leader.change_membership(io, "remove", "n0"))
    net.deliver()
    net.tick("n0", 3)
    net.deliver()
    assert leader.role == FOLLOWER
    for _ in range(40):
        for n in ("n1", "n2", "l0"):
            net.tick(n)
        net.deliver()
        if net.leaders():
            break
    assert len(net.leaders()) == 1 and net.leaders()[0] != "n0"
    assert set(net.core(net.leaders()[0]).voters) == {"n1", "n2", "l0"}


def test_read_index_waits_for_a_quorum_heartbeat() -> None:
    """Thesis §6.4: a read is released only after a majority confirms leadership."""
    net = CoreNet(3)
    net.elect("n0")
    net.deliver()
    leader = net.core("n0")
    leader.take_ready()
    net.run("n0", lambda io: leader.read_barrier(io, 7))
    assert leader.take_ready().reads == []
    net.deliver()
    assert leader.take_ready().reads == [(7, leader.commit)]
    with pytest.raises(NotLeader):
        net.run("n1", lambda io: net.core("n1").read_barrier(io, 8))


def test_reads_fail_when_leadership_is_lost() -> None:
    net = CoreNet(3)
    net.elect("n0")
    net.deliver()
    leader = net.core("n0")
    net.partition(["n0"])
    net.run("n0", lambda io: leader.read_barrier(io, 3))
    for _ in range(40):
        net.tick("n0")
        net.deliver()
    assert leader.role == FOLLOWER
    assert 3 in leader.take_ready().failed_reads


def test_unknown_options_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        CoreNet(1, options={"election_tick": 3})
    with pytest.raises(LocalProtocolError):
        CoreNet(1, options={"election_ticks": 3, "heartbeat_ticks": 3})


def test_single_node_commits_alone() -> None:
    net = CoreNet(1)
    net.elect("n0")
    net.propose("n0", b"solo")
    assert committed_commands(net, "n0") == [b"solo"]
    assert net.core("n0").role == LEADER and CANDIDATE != LEADER


def test_append_reply_shapes() -> None:
    assert AppendReply(1, True, 3, 0, 0, 0).index == 3
    assert AppendEntries(1, 0, 0, [], 0, 0).entries == []


def test_lease_reads_skip_the_round_only_within_the_lease() -> None:
    """Thesis §6.4.1 (optional, bounded drift): after a quorum acknowledged a heartbeat
    sent at tick t, reads are served at once until t + election_ticks - margin; never
    after a leadership transfer began."""
    net = CoreNet(3, options={"lease_reads": True})
    net.elect("n0")
    net.deliver()
    leader = net.core("n0")
    net.tick("n0", 3)
    net.deliver()
    leader.take_ready()
    net.run("n0", lambda io: leader.read_barrier(io, 1))
    assert leader.take_ready().reads == [(1, leader.commit)]     # no round trip needed
    net.partition(["n0"])
    for _ in range(14):
        net.tick("n0")
        net.deliver()
    net.run("n0", lambda io: leader.read_barrier(io, 2))
    assert leader.take_ready().reads == []                       # lease ran out
    net.heal()
    net.tick("n0", 3)
    net.deliver()
    leader.take_ready()
    net.run("n0", lambda io: leader.change_membership(io, "transfer_leader", "n1"))
    net.queue.clear()
    net.run("n0", lambda io: leader.read_barrier(io, 3))
    assert leader.take_ready().reads == []


def test_lease_reads_need_check_quorum() -> None:
    with pytest.raises(LocalProtocolError):
        CoreNet(1, options={"lease_reads": True, "check_quorum": False})


def test_replicating_follower_behind_compaction_switches_to_snapshot() -> None:
    """§7: a follower whose probe is answered after the leader compacted past it goes
    to snapshot (regression: the pipelining loop must stop once it leaves REPLICATE)."""
    from giants.core.envelope import Envelope
    net = CoreNet(3, options={"snapshot_trailing_entries": 0, "max_batch_entries": 1})
    net.elect("n0")
    net.deliver()
    leader = net.core("n0")
    net.partition(["n2"])
    for i in range(5):
        net.propose("n0", f"v{i}".encode())
    net.deliver()
    leader.take_ready()
    pr = leader.progress["n2"]
    match = pr.match
    pr.become_probe()                           # a probe is out, answered late
    net.run("n0", lambda io: leader.compact(io, leader.commit, b"state"))
    assert match < leader.log.base_index
    net.queue.clear()
    net.send_raw(Envelope("n2", "n0", 1, None, AppendReply(1, True, match, 0, 0, 0)))
    assert pr.state == "snapshot"
    sent = [e.body for e in net.queue if e.target == "n2"]
    assert sum(type(b).__name__ == "InstallSnapshot" for b in sent) == 1


def _commit_after_replication(notify: bool) -> tuple[int, int, list[str]]:
    """n0 leads; an entry reaches n1 (which commits it) before n2; the leader may be
    asked to notify n2. Returns (index, n2's commit afterwards, heartbeats sent)."""
    net = CoreNet(3, options={"heartbeat_ticks": 5})
    net.elect("n0")
    net.deliver()
    leader = net.core("n0")
    net.propose("n0", b"x")
    index = leader.log.last_index
    if notify:
        net.run("n0", lambda io: leader.notify_commit(io, "n2", index))
    to_n2 = [e for e in net.queue if e.target == "n2"]
    net.queue = [e for e in net.queue if e.target != "n2"]
    net.deliver()                                   # n1 stores it: committed
    assert leader.commit == index and net.core("n2").commit < index
    sent_early = [e.target for e in net.queue if isinstance(e.body, Heartbeat)]
    assert sent_early == [], "a notice went out before n2 stored the entry"
    net.queue.extend(to_n2)
    heartbeats: list[str] = []
    while net.queue:                                # n2 stores it and acknowledges
        heartbeats += [e.target for e in net.queue if isinstance(e.body, Heartbeat)]
        net.deliver(max_messages=1)
    return index, net.core("n2").commit, heartbeats


def test_commit_notice_reaches_a_follower_once_committed_and_stored() -> None:
    """§5.3: a follower learns the commit index from the leader's next message; with
    ``notify_commit`` the leader sends it one heartbeat as soon as the entry is both
    committed and stored there -- not before (it may not match the leader's log yet),
    and without waiting for the heartbeat interval."""
    index, n2_commit, heartbeats = _commit_after_replication(notify=True)
    assert n2_commit == index and heartbeats == ["n2"]
    index, n2_commit, heartbeats = _commit_after_replication(notify=False)
    assert n2_commit < index and heartbeats == []


def test_commit_notice_now_if_already_known_and_dropped_on_step_down() -> None:
    net = CoreNet(3, options={"heartbeat_ticks": 5})
    net.elect("n0")
    net.deliver()
    leader = net.core("n0")
    io = net.run("n0", lambda io: leader.notify_commit(io, "n1", leader.commit))
    assert [(e.target, type(e.body)) for e in io.sends] == [("n1", Heartbeat)]
    io = net.run("n1", lambda io: net.core("n1").notify_commit(io, "n2", 1))
    assert io.sends == []                            # not the leader: nothing
    net.run("n0", lambda io: leader.notify_commit(io, "n2", leader.commit + 5))
    assert leader._commit_notices == {"n2": leader.commit + 5}
    net.partition(["n0"])
    for _ in range(40):
        net.tick("n0")
        net.deliver()
    assert leader.role == FOLLOWER and leader._commit_notices == {}
