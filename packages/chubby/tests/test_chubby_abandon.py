"""Calls a caller stopped waiting for (Burrows, OSDI 2006, §2.4 "Locks", §2.6 "API"):
an ``Acquire`` that timed out or was cancelled, then won, must not leave the lock held
by a session that does not know it, and must not block the session's next request
(docs/integration.md, finding 2).

The session core sends one write at a time, in sequence-number order. An abandoned
request that the cell may still carry out stays at the head of the queue until its
outcome is known: a blocking ``acquire`` is withdrawn (re-sent as ``try_acquire`` with
the same sequence number), and anything the cell did for it that the caller does not
know about is undone (``release``, ``close``) *before* the next request is sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from giants.chubby._messages import (
    Call,
    CallResult,
    CreateSession,
    MasterInfo,
    SessionInfo,
    WhereIsMaster,
)
from giants.chubby._session import ClientCore, ClientOptions
from giants.chubby.sim import SIM_CLIENT, SimCell
from giants.core.envelope import Envelope
from giants.core.errors import Rejected, Timeout
from giants.core.process import Io

ROOT = "/ls/cell"
LOCK = f"{ROOT}/lock"


@pytest.fixture
def cell() -> SimCell:
    c = SimCell(1)
    c.wait_safe()
    return c


def _lock_handles(cell: SimCell) -> tuple[int, int]:
    ha = cell.call("alice", "open", LOCK, "l", "file", [], None)[0]
    hb = cell.call("bob", "open", LOCK, "l", "file", [], None)[0]
    return ha, hb


# -- in the simulator: a cell and scripted clients -------------------------------------


def test_acquire_that_timed_out_and_then_won_does_not_deadlock_the_next(cell: SimCell) -> None:
    """bob's acquire waits at the master past its deadline (Timeout); bob asks again;
    alice releases. The first acquire must not win behind bob's back and leave his
    second one parked behind his own handle: the second one gets the lock."""
    ha, hb = _lock_handles(cell)
    cell.call("alice", "acquire", ha, "x")
    first = cell.start("bob", "acquire", [hb, "x"])
    with pytest.raises(Timeout):
        cell.result("bob", first, timeout_s=SIM_CLIENT.op_timeout_s + 1.0)
    again = cell.start("bob", "acquire", [hb, "x"])
    cell.sim.run_for(0.3)
    cell.call("alice", "release", ha)
    ok, seq = cell.result("bob", again, timeout_s=3.0)
    assert ok and cell.call("alice", "check_sequencer", seq) is True
    node = cell.master().db.nodes[LOCK]
    assert node.exclusive == hb and node.lock_gen == seq[2]
    cell.call("bob", "release", hb)
    assert cell.call("alice", "try_acquire", ha, "x")[0] is True


def test_abandoned_acquire_then_ask_again(cell: SimCell) -> None:
    """The lock-service pattern: ``acquire(timeout_s=...)`` gives up (the call is
    abandoned) and the caller asks again at once on the same handle; the holder then
    releases. The new acquire wins; the abandoned one never surfaces."""
    ha, hb = _lock_handles(cell)
    cell.call("alice", "acquire", ha, "x")
    bob = cell.clients["bob"]
    first = cell.start("bob", "acquire", [hb, "x"])
    cell.sim.run_for(0.3)
    bob.core.abandon(cell.sim.now, first)
    again = cell.start("bob", "acquire", [hb, "x"])
    cell.sim.run_for(0.3)
    cell.call("alice", "release", ha)
    ok, seq = cell.result("bob", again, timeout_s=3.0)
    assert ok and cell.call("alice", "check_sequencer", seq) is True
    assert first not in bob.done
    assert not cell.master().parked


def test_abandoned_acquire_that_won_is_released(cell: SimCell) -> None:
    """Abandoned while its grant is being committed: the library learns it won and
    releases at once, so the lock is free again without anyone asking."""
    ha, hb = _lock_handles(cell)
    cell.call("alice", "acquire", ha, "x")
    bob = cell.clients["bob"]
    first = cell.start("bob", "acquire", [hb, "x"])
    cell.sim.run_for(0.3)
    m = cell.master()
    others = [r for r in cell.replicas if r != m.node_id]
    for r in others:
        cell.sim.clog(r, m.node_id, 0.3)      # commits are slow: the grant is in flight
    release = cell.start("alice", "release", [ha])

    def bobs() -> list[Any]:
        return [env for k, (env, _p, _l) in m.pending.items() if k[1] == bob.core.session]

    cell.sim.run_for(1.0, stop=lambda: bool(bobs()))
    [proposed] = bobs()

    def abandon(process: Any, io: Io) -> None:
        process.core.abandon(io.now, first)
        process.flush(io)

    cell.sim.invoke("bob", abandon)
    cell.sim.run_for(0.05)
    [withdrawal] = bobs()               # the withdrawal found it being committed
    assert withdrawal.body.op == "try_acquire" and withdrawal.msg_id != proposed.msg_id
    cell.sim.heal()
    cell.result("alice", release)
    cell.sim.run_for(1.0)
    assert first not in bob.done
    node = cell.master().db.nodes[LOCK]
    assert node.exclusive == 0 and node.lock_gen == 2      # bob won once, then let go
    assert not bob.core._writes


def test_acquire_on_a_handle_that_holds_the_lock_is_refused(cell: SimCell) -> None:
    """A second Acquire through a handle that already holds the lock gets a clear error
    (it used to wait at the master forever, behind its own handle)."""
    ha, _hb = _lock_handles(cell)
    _ok, seq = cell.call("alice", "acquire", ha, "x")
    for op, mode in [("acquire", "x"), ("acquire", "s"), ("try_acquire", "x")]:
        with pytest.raises(Rejected) as e:
            cell.call("alice", op, ha, mode, timeout_s=2.0)
        assert e.value.detail.get("reason") == "already_held"
    assert cell.call("alice", "check_sequencer", seq) is True     # still held, same gen
    cell.call("alice", "release", ha)
    hs = cell.call("alice", "open", LOCK, "l", "", [], None)[0]
    cell.call("alice", "acquire", hs, "s")
    with pytest.raises(Rejected) as e:
        cell.call("alice", "acquire", hs, "x", timeout_s=2.0)   # no upgrade in place
    assert e.value.detail.get("reason") == "already_held"


def test_master_drops_a_parked_acquire_superseded_by_a_newer_call(cell: SimCell) -> None:
    """The client sends its writes one at a time in sequence order, so a newer call of
    a session means it gave up on the older one: a parked older acquire is dropped (a
    late duplicate of it is answered without effect) and never wins later."""
    ha, hb = _lock_handles(cell)
    cell.call("alice", "acquire", ha, "x")
    bob = cell.clients["bob"]
    m = cell.master()
    sid, epoch = bob.core.session, bob.core.epoch
    last = m.db.sessions[sid].last_seq

    def send(seq: int, op: str, args: list[Any]) -> None:
        def fn(_process: Any, io: Io) -> None:
            io.send(m.node_id, Call(sid, epoch, seq, op, args))
        cell.sim.invoke("bob", fn)

    send(last + 5, "acquire", [hb, "x"])
    cell.sim.run_for(0.2)
    assert [c.seq for _e, c in m.parked[LOCK]] == [last + 5]
    send(last + 6, "acquire", [hb, "x"])
    cell.sim.run_for(0.2)
    assert [c.seq for _e, c in m.parked[LOCK]] == [last + 6]
    send(last + 5, "acquire", [hb, "x"])          # a late duplicate of the older one
    cell.sim.run_for(0.2)
    assert [c.seq for _e, c in m.parked[LOCK]] == [last + 6]
    cell.call("alice", "release", ha)
    cell.sim.run_for(0.5)
    assert m.db.sessions[sid].last_seq == last + 6
    assert m.db.nodes[LOCK].exclusive == hb and m.db.nodes[LOCK].lock_gen == 2


def test_resent_acquire_keeps_its_place_in_line(cell: SimCell) -> None:
    """A waiting acquire is re-sent now and then (a lost message costs little); the
    master keeps one copy in its place, so the first waiter still wins first, and the
    holder hears of the conflict once per waiter."""
    ha = cell.call("alice", "open", LOCK, "l", "file", ["conflict"], None)[0]
    hb = cell.call("bob", "open", LOCK, "l", "file", [], None)[0]
    cell.add_client("carol")
    cell.wait_safe("carol")
    hc = cell.call("carol", "open", LOCK, "l", "file", [], None)[0]
    cell.call("alice", "acquire", ha, "x")
    first = cell.start("bob", "acquire", [hb, "x"])
    cell.sim.run_for(0.1)
    second = cell.start("carol", "acquire", [hc, "x"])
    cell.sim.run_for(3.0)                       # both re-sent theirs a few times
    m = cell.master()
    assert [c.session for _e, c in m.parked[LOCK]] == [
        cell.clients["bob"].core.session, cell.clients["carol"].core.session]
    conflicts = [e for e in cell.clients["alice"].events if e[0] == "conflict"]
    assert len(conflicts) == 2
    cell.call("alice", "release", ha)
    ok, _seq = cell.result("bob", first)
    assert ok and second not in cell.clients["carol"].done
    cell.call("bob", "release", hb)
    assert cell.result("carol", second)[0] is True


def test_refused_try_acquire_is_not_granted_by_a_late_duplicate(cell: SimCell) -> None:
    """A refused try_acquire is answered without the log; a duplicate of it arriving
    after the lock came free must get the same refusal, not the lock."""
    ha, hb = _lock_handles(cell)
    cell.call("alice", "acquire", ha, "x")
    bob = cell.clients["bob"]
    m = cell.master()
    sid, epoch = bob.core.session, bob.core.epoch
    seq = m.db.sessions[sid].last_seq + 1
    replies: list[Any] = []

    def send(_process: Any, io: Io) -> None:
        io.send(m.node_id, Call(sid, epoch, seq, "try_acquire", [hb, "x"]))

    original = bob.receive

    def receive(io: Io, env: Envelope) -> None:
        replies.append(env.body)
        original(io, env)

    bob.receive = receive  # type: ignore[method-assign]
    cell.sim.invoke("bob", send)
    cell.sim.run_for(0.2)
    cell.call("alice", "release", ha)
    cell.sim.invoke("bob", send)
    cell.sim.run_for(0.3)
    assert [r.result for r in replies if isinstance(r, CallResult)] == [[False, None]] * 2
    assert m.db.nodes[LOCK].exclusive == 0


def test_adopted_session_releases_the_lock(cell: SimCell) -> None:
    """``giants chubby unlock`` adopts a live session and releases its lock: its first
    call's sequence number is below the session's last one, which the master refuses
    as superseded (it used to answer it with the session's last result, so nothing was
    released); the adopter goes on after the newest number and the release happens.
    The original client, superseded in turn, also goes on."""
    ha, hb = _lock_handles(cell)
    cell.call("alice", "acquire", ha, "x")
    alice = cell.clients["alice"].core
    cell.add_client("unlocker", adopt=(alice.session, alice.epoch))
    cell.wait_safe("unlocker")
    assert cell.call("unlocker", "release", ha) is True
    assert cell.master().db.nodes[LOCK].exclusive == 0
    assert cell.call("bob", "try_acquire", hb, "x")[0] is True
    cell.call("alice", "write", cell.call("alice", "open", f"{ROOT}/f", "w", "file", [],
                                          None)[0], b"still mine", -1)


# -- the session core alone (sans-I/O): what it sends, in what order -------------------


class _Wire:
    """A ``ClientCore`` with a hand-driven master ``r0``."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        self.core = ClientCore(["r0"], user="u", nonce="n", options=options or ClientOptions(
            grace_s=20.0, attempt_s=0.5, op_timeout_s=10.0))
        self.now = 0.0
        self.core.start(self.now)
        self.answer(WhereIsMaster, MasterInfo("r0", 1, {"r0": "r0"}))
        self.answer(CreateSession, SessionInfo(1, 1, 12.0))
        assert self.core.state == "safe"
        self.sent: list[tuple[int, Call]] = []

    def calls(self) -> list[tuple[int, Call]]:
        """Calls sent since the last look (KeepAlives left unanswered)."""
        out = [(t, b) for t, _target, b, _ in self.core.take_outbox() if isinstance(b, Call)]
        self.sent += out
        return out

    def answer(self, kind: type, body: Any) -> None:
        for token, _target, b, _ in self.core.take_outbox():
            if isinstance(b, kind):
                self.core.on_reply(self.now, token, body)
                return
        raise AssertionError(f"no {kind.__name__} sent")


def test_release_of_a_won_abandoned_acquire_goes_before_later_requests() -> None:
    w = _Wire()
    core = w.core
    acq = core.submit(w.now, "acquire", [5, "x"])
    [(t1, c1)] = w.calls()
    assert c1.op == "acquire"
    core.abandon(w.now, acq)
    [(t2, c2)] = w.calls()                           # withdrawn: same seq, try_acquire
    assert (c2.op, c2.seq, c2.args) == ("try_acquire", c1.seq, [5, "x"])
    later = core.submit(w.now, "try_acquire", [5, "x"])
    assert w.calls() == []                           # one write at a time
    core.on_reply(w.now, t1, CallResult([False, None], False))   # stale token: ignored
    core.on_reply(w.now, t2, CallResult([True, ["/ls/cell/l", "x", 3]], False))
    [(t3, c3)] = w.calls()
    assert (c3.op, c3.args) == ("release", [5]) and c3.seq > c1.seq
    core.on_reply(w.now, t3, CallResult(True, False))
    [(t4, c4)] = w.calls()
    assert (c4.op, c4.seq) == ("try_acquire", c3.seq + 1)
    core.on_reply(w.now, t4, CallResult([True, ["/ls/cell/l", "x", 4]], False))
    assert core.take_completed() == [(later, None, [True, ["/ls/cell/l", "x", 4]])]


def test_acquire_past_its_deadline_is_reported_then_withdrawn() -> None:
    """The deadline passes while the acquire waits at the master: the caller hears
    Timeout at once, and the core keeps the call until the cell says what became of it
    (here: refused), so the next call's sequence number follows a settled one."""
    w = _Wire()
    core = w.core
    acq = core.submit(w.now, "acquire", [5, "x"], timeout_s=1.0)
    [(_t1, c1)] = w.calls()
    w.now = 1.0
    core.tick(w.now)
    [(op_id, err, _)] = core.take_completed()
    assert op_id == acq and isinstance(err, Timeout)
    [(t2, c2)] = w.calls()
    assert (c2.op, c2.seq) == ("try_acquire", c1.seq)
    nxt = core.submit(w.now, "write", [6, b"x", -1])
    assert w.calls() == []
    core.on_reply(w.now, t2, CallResult([False, None], False))
    assert core.take_completed() == []
    [(t3, c3)] = w.calls()
    assert (c3.op, c3.seq) == ("write", c1.seq + 1)
    core.on_reply(w.now, t3, CallResult({"content_gen": 1}, False))
    assert core.take_completed() == [(nxt, None, {"content_gen": 1})]
    assert core.master == "r0"          # giving up on a call is not losing the master


def test_abandoned_open_that_succeeded_is_closed() -> None:
    w = _Wire()
    core = w.core
    op = core.submit(w.now, "open", [f"{ROOT}/e", "r", "ephemeral", [], None])
    [(t1, c1)] = w.calls()
    core.abandon(w.now, op)
    assert w.calls() == []                       # nothing to withdraw: wait for it
    later = core.submit(w.now, "write", [9, b"x", -1])
    core.on_reply(w.now, t1, CallResult([17, {"instance": 4}], False))
    [(t2, c2)] = w.calls()
    assert (c2.op, c2.args, c2.seq) == ("close", [17], c1.seq + 1)
    core.on_reply(w.now, t2, CallResult(None, False))
    assert 17 not in core.handles
    [(_t3, c3)] = w.calls()
    assert c3.op == "write" and later not in [c[0] for c in core.take_completed()]


def test_unsent_abandoned_call_is_dropped() -> None:
    w = _Wire()
    core = w.core
    first = core.submit(w.now, "write", [9, b"a", -1])
    second = core.submit(w.now, "acquire", [5, "x"])
    [(t1, _c1)] = w.calls()
    core.abandon(w.now, second)                 # never sent: nothing to undo
    core.on_reply(w.now, t1, CallResult({"content_gen": 1}, False))
    assert core.take_completed() == [(first, None, {"content_gen": 1})]
    assert w.calls() == [] and not core._writes
