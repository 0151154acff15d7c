"""Paper-claim tests on the cell and client cores, driven in the simulator without
faults (Burrows, OSDI 2006, §2.3-§2.9, §2.12)."""

from __future__ import annotations

import itertools
import random

import pytest

from giants.chubby._messages import Call
from giants.chubby._namespace import Namespace, validate_call
from giants.chubby.sim import SIM_CELL, SimCell
from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import NotFound, Rejected
from giants.core.process import Io

ROOT = "/ls/cell"


@pytest.fixture
def cell() -> SimCell:
    c = SimCell(1)
    c.wait_safe()
    return c


def reason(exc: pytest.ExceptionInfo[Rejected]) -> str:
    return str(exc.value.detail.get("reason"))


def test_files_metadata_and_generations(cell: SimCell) -> None:
    """§2.3: instance, content generation, checksum; a re-created node is a new instance."""
    h = cell.call("alice", "open", f"{ROOT}/f", "rw", "file", [], None)[0]
    s1 = cell.call("alice", "write", h, b"one", -1)
    s2 = cell.call("alice", "write", h, b"two", -1)
    assert s2["content_gen"] == s1["content_gen"] + 1 and s2["checksum"] != s1["checksum"]
    with pytest.raises(Rejected) as e:
        cell.call("alice", "write", h, b"three", s1["content_gen"])   # compare-and-set
    assert reason(e) == "generation"
    cell.call("alice", "delete", h)
    h2 = cell.call("alice", "open", f"{ROOT}/f", "rw", "file", [], None)[0]
    assert cell.call("alice", "stat", h2)["instance"] != s1["instance"]
    with pytest.raises(Rejected) as e:
        cell.call("alice", "read", h)          # the old handle's node is gone
    assert reason(e) == "bad_handle"


def test_directories_and_children_events(cell: SimCell) -> None:
    d = cell.call("alice", "open", f"{ROOT}/dir", "r", "dir", ["child"], None)[0]
    cell.call("bob", "open", f"{ROOT}/dir/a", "r", "file", [], None)
    assert cell.call("alice", "readdir", d) == ["a"]
    cell.sim.run_for(1.5)
    assert ["child", f"{ROOT}/dir", "added", d] in cell.clients["alice"].events
    with pytest.raises(Rejected) as e:
        cell.call("alice", "delete", d)
    assert reason(e) == "not_empty"


@pytest.mark.parametrize("path", ["/ls/other/x", "/etc/passwd", f"{ROOT}/a//b", f"{ROOT}/..",
                                  f"{ROOT}/sp ace", f"{ROOT}/" + "x" * 300, 7])
def test_invalid_paths_are_rejected_without_change(cell: SimCell, path: object) -> None:
    before = cell.master().db.snapshot()
    with pytest.raises(Rejected) as e:
        cell.call("alice", "open", path, "r", "file", [], None)
    assert reason(e) in ("bad_path", "bad_args")
    assert cell.master().db.snapshot()["nodes"] == before["nodes"]


def test_missing_node_and_bad_arguments(cell: SimCell) -> None:
    with pytest.raises(NotFound):
        cell.call("alice", "open", f"{ROOT}/absent", "r", "", [], None)
    with pytest.raises(NotFound):
        cell.call("alice", "open", f"{ROOT}/no/parent", "r", "file", [], None)
    for op, args in [("write", [1]), ("open", [f"{ROOT}/x", "rwz", "", [], None]),
                     ("open", [f"{ROOT}/x", "r", "bogus", [], None]),
                     ("acquire", [1, "q"]), ("frobnicate", []), ("write", [True, b"", -1])]:
        with pytest.raises(Rejected):
            cell.call("alice", op, *args)


def test_acl_files_control_writes(cell: SimCell) -> None:
    """§2.3: ACLs by name; the ACL file lists users."""
    cell.call("alice", "open", f"{ROOT}/acl", "r", "dir", [], None)
    a = cell.call("alice", "open", f"{ROOT}/acl/owners", "rw", "file", [], None)[0]
    cell.call("alice", "write", a, b"alice\n", -1)
    f = cell.call("alice", "open", f"{ROOT}/guarded", "rw", "file", [], ["", "owners", "owners"])[0]
    cell.call("alice", "write", f, b"ok", -1)
    with pytest.raises(Rejected) as e:
        cell.call("bob", "open", f"{ROOT}/guarded", "rw", "", [], None)
    assert reason(e) == "permission"
    hb = cell.call("bob", "open", f"{ROOT}/guarded", "r", "", [], None)[0]
    assert cell.call("bob", "read", hb)[0] == b"ok"      # read ACL is open
    with pytest.raises(Rejected) as e:
        cell.call("bob", "write", hb, b"mine", -1)
    assert reason(e) == "permission"
    assert cell.call("bob", "read", hb)[0] == b"ok"


def test_locks_sequencers_and_check_sequencer(cell: SimCell) -> None:
    """§2.4: exclusive/shared locks; a sequencer goes stale once the lock is released."""
    ha = cell.call("alice", "open", f"{ROOT}/lock", "l", "file", ["lock"], None)[0]
    hb = cell.call("bob", "open", f"{ROOT}/lock", "l", "file", [], None)[0]
    ok, seq = cell.call("alice", "try_acquire", ha, "x")
    assert ok and seq[1] == "x"
    assert cell.call("bob", "try_acquire", hb, "x") == [False, None]
    assert cell.call("bob", "try_acquire", hb, "s") == [False, None]
    assert cell.call("bob", "check_sequencer", seq) is True
    cell.call("alice", "release", ha)
    assert cell.call("bob", "check_sequencer", seq) is False      # stale
    ok, seq2 = cell.call("bob", "try_acquire", hb, "s")
    assert ok and seq2[2] > seq[2]
    ok, seq3 = cell.call("alice", "try_acquire", ha, "s")          # shared with bob
    assert ok and seq3[2] == seq2[2]
    cell.call("alice", "release", ha)
    with pytest.raises(Rejected) as e:
        cell.call("alice", "release", ha)
    assert reason(e) == "not_held"


def test_blocking_acquire_waits_and_conflict_event(cell: SimCell) -> None:
    ha = cell.call("alice", "open", f"{ROOT}/lock", "l", "file", ["conflict"], None)[0]
    hb = cell.call("bob", "open", f"{ROOT}/lock", "l", "file", [], None)[0]
    cell.call("alice", "acquire", ha, "x")
    pending = cell.start("bob", "acquire", [hb, "x"])
    cell.sim.run_for(1.0)
    assert pending not in cell.clients["bob"].done
    assert any(e[0] == "conflict" for e in cell.clients["alice"].events)
    cell.call("alice", "release", ha)
    ok, seq = cell.result("bob", pending)
    assert ok and seq[1] == "x"


def test_lock_delay_after_holder_session_dies(cell: SimCell) -> None:
    """§2.4: a lock whose holder's session expired cannot be taken for lock_delay_s."""
    hb = cell.call("bob", "open", f"{ROOT}/lock", "l", "file", [], None)[0]
    ha = cell.call("alice", "open", f"{ROOT}/lock", "l", "file", [], None)[0]
    cell.call("alice", "acquire", ha, "x")
    cell.sim.crash("alice")                       # the holder dies: no more KeepAlives
    # a KeepAlive held at the master when alice died still gets its (lost) reply, so
    # the master's lease for her runs at most two lease periods
    node = cell.master().db.nodes[f"{ROOT}/lock"]
    cell.sim.run_for(2 * SIM_CELL.lease_s + 0.3, stop=lambda: node.delayed)
    assert node.delayed and not node.exclusive
    assert cell.call("bob", "try_acquire", hb, "x") == [False, None]
    cell.sim.run_for(SIM_CELL.lock_delay_s)
    ok, _ = cell.call("bob", "try_acquire", hb, "x")
    assert ok


def test_ephemeral_node_goes_with_its_session(cell: SimCell) -> None:
    d = cell.call("bob", "open", ROOT, "r", "", ["child"], None)[0]
    cell.call("alice", "open", f"{ROOT}/eph", "r", "ephemeral", [], None)
    assert "eph" in cell.call("bob", "readdir", d)
    cell.sim.crash("alice")
    cell.sim.run_for(SIM_CELL.lease_s + 1.0)
    assert "eph" not in cell.call("bob", "readdir", d)
    assert ["child", ROOT, "removed", d] in cell.clients["bob"].events


def test_closed_handle_and_expired_session_get_clear_errors(cell: SimCell) -> None:
    h = cell.call("alice", "open", f"{ROOT}/f", "rw", "file", [], None)[0]
    cell.call("alice", "close", h)
    with pytest.raises(Rejected) as e:
        cell.call("alice", "write", h, b"x", -1)
    assert reason(e) == "bad_handle"
    hb = cell.call("bob", "open", f"{ROOT}/f", "rw", "", [], None)[0]
    with pytest.raises(Rejected) as e:
        cell.call("alice", "read", hb)            # bob's handle is not alice's
    assert reason(e) == "bad_handle"
    cell.call("alice", "end_session")
    with pytest.raises(Rejected) as e:
        cell.call("alice", "open", f"{ROOT}/f", "r", "", [], None)
    assert reason(e) == "session_expired"


def test_cache_is_invalidated_before_a_write_completes(cell: SimCell) -> None:
    """§2.9: bob caches; alice's write returns only after bob's cache dropped the entry."""
    ha = cell.call("alice", "open", f"{ROOT}/f", "rw", "file", [], None)[0]
    cell.call("alice", "write", ha, b"v1", -1)
    hb = cell.call("bob", "open", f"{ROOT}/f", "r", "", [], None)[0]
    assert cell.call("bob", "read", hb)[0] == b"v1"
    bob = cell.clients["bob"].core
    assert ("read", f"{ROOT}/f") in bob.cache.entries
    hits = bob.stats["cache_hits"]
    assert cell.call("bob", "read", hb)[0] == b"v1"
    assert bob.stats["cache_hits"] == hits + 1           # served locally
    op = cell.start("alice", "write", [ha, b"v2", -1])
    cell.sim.run_for(0.001)
    assert op not in cell.clients["alice"].done          # held for bob's acknowledgement
    cell.result("alice", op)
    assert ("read", f"{ROOT}/f") not in bob.cache.entries
    assert cell.call("bob", "read", hb)[0] == b"v2"


def test_negative_cache_invalidated_by_create(cell: SimCell) -> None:
    assert cell.call("bob", "lookup", f"{ROOT}/later") is None
    assert ("lookup", f"{ROOT}/later") in cell.clients["bob"].core.cache.entries
    cell.call("alice", "open", f"{ROOT}/later", "r", "file", [], None)
    assert cell.call("bob", "lookup", f"{ROOT}/later") is not None


def test_master_failover_keeps_session_handles_and_locks(cell: SimCell) -> None:
    """§2.12: a new master (new epoch) keeps sessions, handles and locks; the client
    sees a fail-over event and never expires."""
    ha = cell.call("alice", "open", f"{ROOT}/lock", "rwl", "file", [], None)[0]
    _ok, seq = cell.call("alice", "acquire", ha, "x")
    old = cell.master()
    epoch = old.db.epoch
    cell.sim.crash(old.node_id)
    cell.sim.run_for(3.0)
    new = cell.master()
    assert new.node_id != old.node_id and new.db.epoch == epoch + 1
    assert cell.call("bob", "check_sequencer", seq) is True
    assert cell.call("alice", "write", ha, b"still mine", -1)["size"] == 10
    events = [e[0] for e in cell.clients["alice"].events]
    assert "failover" in events and "expired" not in events
    assert cell.clients["alice"].core.state == "safe"


def test_new_master_refuses_old_epoch_calls(cell: SimCell) -> None:
    m = cell.master()
    sid = cell.clients["alice"].core.session
    io = Io("probe", 0.0, random.Random(0), itertools.count(1).__next__)
    m.receive(io, Envelope("probe", m.node_id, 1, None,
                           Call(sid, m.db.epoch - 1, 0, "lookup", [ROOT])))
    got = [e.body for e in io.sends if e.target == "probe"]
    assert len(got) == 1 and isinstance(got[0], ErrorReply) and got[0].kind == "definite"
    assert got[0].error["detail"]["reason"] == "old_epoch"


def test_namespace_snapshot_roundtrip() -> None:
    ns = Namespace("cell")
    ns.apply(["epoch", "m", 1])
    sid, _ = ns.apply(["create_session", "u", "n"])
    ns.apply(["op", sid, 1, "open", [f"{ROOT}/f", "rwl", "file", ["modified"], None], False])
    ns.apply(["op", sid, 2, "acquire", [1, "x"], False])
    again = Namespace("cell")
    again.restore(ns.snapshot())
    assert again.snapshot() == ns.snapshot()
    assert again.apply(["op", sid, 2, "acquire", [1, "x"], False])[0][0] is True  # deduped
    with pytest.raises(Rejected):
        validate_call("open", [f"{ROOT}/f", "r", "file", ["nonsense"], None], "cell")


def test_write_retried_while_pending_is_applied_once(cell: SimCell) -> None:
    """A client re-sends a write whose commit is slow (same session seq): the master
    keeps one pending entry, answers the latest attempt, and applies it once."""
    from giants.chubby._session import ClientOptions

    eager = cell.add_client("carol", ClientOptions(grace_s=6.0, attempt_s=0.05,
                                                  op_timeout_s=6.0, resend_before_s=0.15))
    cell.wait_safe("carol")
    h = cell.call("carol", "open", f"{ROOT}/slow", "rw", "file", [], None)[0]
    m = cell.master()
    others = [r for r in cell.replicas if r != m.node_id]
    for r in others:
        cell.sim.clog(r, m.node_id, 0.25)          # acknowledgements (so commits) are slow
    op = cell.start("carol", "write", [h, b"once", -1])
    cell.sim.run_for(0.2)                          # carol sent it again meanwhile
    assert any(k[0] == "op" for k in m.pending)
    assert sum(isinstance(r.body, Call) for r in eager.core._requests.values()) == 1
    cell.sim.heal()
    stat = cell.result("carol", op)
    assert stat["content_gen"] == 1
    assert cell.call("carol", "read", h)[0] == b"once"


def test_abandoned_acquire_is_released_or_withdrawn(cell: SimCell) -> None:
    """A caller that stops waiting for a blocking acquire: if it later wins, the library
    releases it at once; if it has not, it is withdrawn and asking again waits anew
    (more cases in test_chubby_abandon.py)."""
    ha = cell.call("alice", "open", f"{ROOT}/lock", "l", "file", [], None)[0]
    hb = cell.call("bob", "open", f"{ROOT}/lock", "l", "file", [], None)[0]
    cell.call("alice", "acquire", ha, "x")
    bob = cell.clients["bob"].core
    first = cell.start("bob", "acquire", [hb, "x"])
    cell.sim.run_for(0.3)
    bob.abandon(cell.sim.now, first)
    cell.call("alice", "release", ha)
    cell.sim.run_for(1.0)                     # bob won, then let go of it by itself
    assert first not in cell.clients["bob"].done
    assert cell.master().db.nodes[f"{ROOT}/lock"].exclusive == 0
    ok, _ = cell.call("alice", "acquire", ha, "x")
    assert ok
    second = cell.start("bob", "acquire", [hb, "x"])
    cell.sim.run_for(0.3)
    bob.abandon(cell.sim.now, second)
    again = cell.start("bob", "acquire", [hb, "x"])     # after the withdrawn one
    cell.call("alice", "release", ha)
    ok, seq = cell.result("bob", again)
    assert ok and cell.call("alice", "check_sequencer", seq) is True
