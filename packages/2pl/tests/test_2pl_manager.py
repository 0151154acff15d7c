"""Paper-claim tests for the lock manager (Eswaran et al. 1976; Gray et al. 1976;
Bernstein, Hadzilacos, Goodman 1987 ch. 3)."""

from __future__ import annotations

import pytest

from giants.core.errors import LocalProtocolError, TxnAborted
from giants.twopl import (
    COMPATIBLE,
    Aborted,
    DeadlockPolicy,
    Granted,
    LockManager,
    LockMode,
    find_cycle,
    supremum,
)

S, X, IS, IX, SIX = LockMode.S, LockMode.X, LockMode.IS, LockMode.IX, LockMode.SIX
ROW = ("t", "r")
ROW2 = ("t", "r2")
TABLE = ("t",)


def mgr(policy: str = "detect", **kw: float) -> LockManager:
    m = LockManager(policy, **kw)  # type: ignore[arg-type]
    for i, name in enumerate(["a", "b", "c", "d"]):
        m.begin(name, float(i))     # a is the oldest
    return m


def test_compatibility_matrix_is_the_papers() -> None:
    # Gray et al. 1976, Table 1 (symmetric; X compatible with nothing).
    for a in LockMode:
        for b in LockMode:
            assert (b in COMPATIBLE[a]) == (a in COMPATIBLE[b])
    assert COMPATIBLE[IS] == {IS, IX, S, SIX}
    assert COMPATIBLE[SIX] == {IS}
    assert supremum(IX, S) is SIX and supremum(S, X) is X and supremum(IS, S) is S


def test_shared_locks_share_exclusive_waits() -> None:
    m = mgr()
    assert m.lock("a", ROW, S) == "granted"
    assert m.lock("b", ROW, S) == "granted"
    assert m.lock("c", ROW, X) == "waiting"
    m.release_all("a")
    assert m.take_events() == []
    m.release_all("b")
    assert m.take_events() == [Granted("c", ROW, X)]
    assert m.holders(ROW) == {"c": X}
    assert m.holders(TABLE) == {"c": IX}


def test_fifo_new_shared_request_does_not_overtake_waiting_exclusive() -> None:
    m = mgr()
    m.lock("a", ROW, S)
    assert m.lock("b", ROW, X) == "waiting"
    assert m.lock("c", ROW, S) == "waiting"       # compatible with a, but b came first
    assert m.waiters(ROW) == [("b", X), ("c", S)]
    m.release_all("a")
    assert m.take_events() == [Granted("b", ROW, X)]
    m.release_all("b")
    assert m.take_events() == [Granted("c", ROW, S)]


def test_upgrade_waits_at_the_head_of_the_queue() -> None:
    m = mgr("timeout", wait_timeout_s=100.0)
    m.lock("a", ROW, S)
    m.lock("b", ROW, S)
    assert m.lock("c", ROW, X) == "waiting"
    assert m.lock("a", ROW, X) == "waiting"       # conversion: ahead of c
    assert m.waiters(ROW)[0] == ("a", X)
    m.release_all("b")
    assert m.take_events() == [Granted("a", ROW, X)]
    assert m.holders(ROW) == {"a": X}


def test_upgrade_granted_at_once_when_alone() -> None:
    m = mgr()
    m.lock("a", ROW, S)
    assert m.lock("a", ROW, X) == "granted"
    assert m.holders(ROW) == {"a": X}


def test_intention_locks_table_share_blocks_row_writer() -> None:
    m = mgr()
    assert m.lock("a", TABLE, S) == "granted"           # reads the whole table
    assert m.lock("b", ROW, S) == "granted"             # IS is compatible with S
    assert m.lock("c", ROW2, X) == "waiting"            # IX on the table conflicts with S
    assert m.waiting_on("c") == TABLE
    m.release_all("a")
    assert m.take_events() == [Granted("c", ROW2, X)]
    assert m.holders(TABLE) == {"b": IS, "c": IX}


def test_six_reads_the_table_and_writes_a_row() -> None:
    m = mgr()
    m.lock("a", TABLE, S)
    assert m.lock("a", ROW, X) == "granted"              # S + IX = SIX on the table
    assert m.holders(TABLE) == {"a": SIX}
    assert m.lock("b", ROW2, S) == "granted"            # IS is compatible with SIX
    assert m.lock("c", ROW2, X) == "waiting"            # IX is not


def test_strict_2pl_no_lock_after_release() -> None:
    m = mgr()
    m.lock("a", ROW, S)
    with pytest.raises(LocalProtocolError):
        m.release("a", TABLE)                           # children first
    m.release("a", ROW)
    with pytest.raises(LocalProtocolError, match="2PL"):
        m.lock("a", ROW2, S)


def test_request_from_aborted_transaction_is_refused_without_change() -> None:
    m = mgr()
    m.lock("a", ROW, X)
    m.abort("b", "client gave up")
    before = (m.holders(ROW), m.waiters(ROW), m.active())
    with pytest.raises(TxnAborted):
        m.lock("b", ROW, S)
    with pytest.raises(TxnAborted):
        m.begin("b", 9.0)
    assert (m.holders(ROW), m.waiters(ROW), m.active()) == before
    with pytest.raises(LocalProtocolError):
        m.lock("zzz", ROW, S)                           # never began


def test_detect_picks_the_youngest_in_the_cycle() -> None:
    m = mgr("detect")
    m.lock("a", ROW, X)
    m.lock("b", ROW2, X)
    assert m.lock("a", ROW2, X) == "waiting"
    with pytest.raises(TxnAborted):
        m.lock("b", ROW, X)                             # b is younger: the victim
    assert m.take_events() == [Aborted("b", m.was_aborted("b") or ""), Granted("a", ROW2, X)]


def test_detect_victim_can_be_a_waiter_that_did_not_close_the_cycle() -> None:
    m = mgr("detect")
    m.lock("c", ROW, X)
    m.lock("a", ROW2, X)
    assert m.lock("c", ROW2, X) == "waiting"           # c (young) waits for a
    assert m.lock("a", ROW, X) == "granted"            # a closes the cycle; c dies
    events = m.take_events()
    assert len(events) == 1 and isinstance(events[0], Aborted) and events[0].txn == "c"


def test_wait_die_younger_dies_older_waits() -> None:
    m = mgr("wait-die")
    m.lock("b", ROW, X)
    assert m.lock("a", ROW, X) == "waiting"             # older waits for younger
    with pytest.raises(TxnAborted, match="wait-die"):
        m.lock("c", ROW, S)                             # younger than b: dies


def test_wound_wait_older_wounds_younger_holder() -> None:
    m = mgr("wound-wait")
    m.lock("b", ROW, X)
    assert m.lock("c", ROW, S) == "waiting"             # younger waits
    assert m.lock("a", ROW, X) == "granted"             # older wounds b and c
    wounded = {e.txn for e in m.take_events() if isinstance(e, Aborted)}
    assert wounded == {"b", "c"}


def test_wound_wait_never_wounds_a_prepared_holder() -> None:
    m = mgr("wound-wait")
    m.lock("b", ROW, X)
    m.mark_prepared("b")
    assert m.lock("a", ROW, X) == "waiting"
    assert m.take_events() == []
    m.release_all("b")
    assert m.take_events() == [Granted("a", ROW, X)]


def test_timeout_policy_aborts_long_waits_only() -> None:
    m = mgr("timeout", wait_timeout_s=1.0)
    m.lock("a", ROW, X)
    assert m.lock("b", ROW, X, now=10.0) == "waiting"
    m.tick(10.5)
    assert m.take_events() == []
    m.tick(11.0)
    assert [type(e) for e in m.take_events()] == [Aborted]
    assert m.waiters(ROW) == []


@pytest.mark.parametrize("policy", [p.value for p in DeadlockPolicy])
def test_upgrade_deadlock_is_broken_by_every_policy(policy: str) -> None:
    m = mgr(policy, wait_timeout_s=1.0)
    m.lock("a", ROW, S)
    m.lock("b", ROW, S)
    outcomes = []
    for name in ("a", "b"):
        try:
            outcomes.append(m.lock(name, ROW, X, now=0.0))
        except TxnAborted:
            outcomes.append("aborted")
    m.tick(5.0)
    events = m.take_events()
    holders = m.holders(ROW)
    assert m.waiters(ROW) == [], (policy, outcomes, events)   # nobody waits forever
    if policy != "timeout":                                   # timeouts may abort both
        assert list(holders.values()) == [X], (policy, outcomes, events)


def test_find_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
    assert sorted(find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) or []) == ["a", "b", "c"]
    assert find_cycle({"a": {"a"}}) == ["a"]
