"""Atomic commitment checkers: split outcomes rejected, acknowledged writes never lost."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giants.core.testing.atomicity import (
    check_acked_writes,
    check_all_or_nothing,
    check_no_lost_writes,
    normalize_outcome,
)
from giants.core.testing.generators import simulate_kv_store
from giants.core.testing.history import History


def test_consistent_outcomes_pass() -> None:
    outcomes: dict[str, dict[str, Any]] = {
        "p1": {"t1": "committed", "t2": "aborted", "t3": "prepared"},
        "p2": {"t1": True, "t2": False, "t3": "committed"},
    }
    told = {"t1": "committed", "t2": "aborted", "t3": "unknown"}
    assert check_all_or_nothing(outcomes, participants={"t1": ["p1", "p2"]}, told=told,
                                decision={"t1": "committed", "t2": "aborted"}) == []


def test_split_outcome_is_rejected() -> None:
    problems = check_all_or_nothing({"p1": {"t1": "committed"}, "p2": {"t1": "aborted"}})
    assert len(problems) == 1 and "disagree" in problems[0]
    assert "p1" in problems[0] and "p2" in problems[0]
    # Prepared or unknown participants do not disagree with anybody ...
    mixed: dict[str, dict[str, Any]] = {"p1": {"t1": True}, "p2": {"t1": "prepared"},
                                        "p3": {"t1": None}}
    assert check_all_or_nothing(mixed) == []
    # ... but once recovery is complete, nobody may still be in doubt.
    in_doubt: dict[str, dict[str, Any]] = {"p1": {"t1": True}, "p2": {"t1": "prepared"}}
    problems = check_all_or_nothing(in_doubt, recovered=True)
    assert len(problems) == 1 and "undecided" in problems[0] and "p2" in problems[0]


def test_participants_must_follow_the_coordinator() -> None:
    problems = check_all_or_nothing({"p1": {"t1": "committed"}}, decision={"t1": "aborted"})
    assert len(problems) == 1 and "decided abort" in problems[0]
    problems = check_all_or_nothing({"p1": {"t1": False}}, decision={"t1": True})
    assert len(problems) == 1 and "decided commit" in problems[0]


def test_what_the_client_was_told_must_hold() -> None:
    told = {"t1": "committed", "t2": "aborted"}
    # Commit acknowledged but one participant has nothing: a lost committed write.
    problems = check_all_or_nothing({"p1": {"t1": True}, "p2": {}},
                                    participants={"t1": ["p1", "p2"]}, told=told)
    assert any("p2 has no record" in p for p in problems)
    # Prepared is fine while recovery is still running, not after it.
    pending: dict[str, dict[str, Any]] = {"p1": {"t1": True}, "p2": {"t1": "prepared"}}
    assert check_all_or_nothing(pending, participants={"t1": ["p1", "p2"]}, told=told) == []
    assert check_all_or_nothing(pending, participants={"t1": ["p1", "p2"]}, told=told,
                                recovered=True)
    # Abort acknowledged but committed somewhere; and a commit nobody asked for.
    assert any("saw abort" in p for p in check_all_or_nothing({"p1": {"t2": True}}, told=told))
    assert any("no client ran" in p
               for p in check_all_or_nothing({"p1": {"t9": True}}, told=told))


def test_outcome_forms() -> None:
    assert [normalize_outcome(v) for v in (True, False, None, "prepared")] == [
        "committed", "aborted", "unknown", "prepared"]
    with pytest.raises(ValueError):
        normalize_outcome("maybe")
    with pytest.raises(ValueError):
        normalize_outcome([1])


@settings(max_examples=80, deadline=None)
@given(n_txns=st.integers(1, 8), n_parts=st.integers(1, 4), data=st.data())
def test_all_or_nothing_matches_its_definition(n_txns: int, n_parts: int,
                                               data: st.DataObject) -> None:
    states = st.sampled_from(["committed", "aborted", "prepared", "unknown"])
    outcomes = {f"p{i}": data.draw(st.dictionaries(st.integers(0, n_txns - 1), states))
                for i in range(n_parts)}
    problems = check_all_or_nothing(outcomes)
    split = any({"committed", "aborted"} <= {o[t] for o in outcomes.values() if t in o}
                for t in range(n_txns))
    assert bool(problems) == split


def test_no_lost_writes_replays_the_commit_order() -> None:
    writes: list[tuple[str, dict[str, Any]]] = [("t1", {"x": 1, "y": 2}),
                                                 ("t2", {"x": 3, "y": None})]
    assert check_no_lost_writes({"x": 3}, writes) == []
    assert check_no_lost_writes({"x": 1}, writes)            # t2's write lost
    assert check_no_lost_writes({"x": 3, "y": 2}, writes)    # t2's delete lost


# -- acknowledged writes ---------------------------------------------------------------


def put(h: History, process: int, key: str, value: Any, outcome: str = "ok") -> int:
    op = h.invoke(process, "put", value, key=key)
    if outcome == "ok":
        h.ok(op)
    elif outcome in ("fail", "info"):
        getattr(h, outcome)(op)
    return op


def test_acked_write_must_survive() -> None:
    h = History()
    put(h, 1, "k", "a")
    put(h, 1, "k", "b")
    assert check_acked_writes(h, {"k": "b"}) == []
    problems = check_acked_writes(h, {"k": "a"})      # the later acknowledged write is gone
    assert len(problems) == 1 and "acknowledged write lost" in problems[0]
    assert check_acked_writes(h, {})                  # everything gone
    assert check_acked_writes(h, {"k": "zzz"})        # nobody wrote that
    assert "never written" in check_acked_writes(h, {"k": "zzz"})[0]


def test_acked_write_may_be_overwritten_by_a_possible_write() -> None:
    h = History()
    put(h, 1, "k", "a")
    put(h, 2, "k", "b", outcome="info")       # may have happened, after "a"
    put(h, 3, "k", "c", outcome="fail")       # certainly did not happen
    put(h, 4, "k", "d", outcome="pending")    # never answered
    assert check_acked_writes(h, {"k": "a"}) == []
    assert check_acked_writes(h, {"k": "b"}) == []
    assert check_acked_writes(h, {"k": "d"}) == []
    assert check_acked_writes(h, {"k": "c"})
    # Concurrent acknowledged writes: either may win.
    h2 = History()
    a = h2.invoke(1, "put", "a", key="k")
    b = h2.invoke(2, "put", "b", key="k")
    h2.ok(a)
    h2.ok(b)
    assert check_acked_writes(h2, {"k": "a"}) == check_acked_writes(h2, {"k": "b"}) == []


def test_deletes_and_cas() -> None:
    h = History()
    put(h, 1, "k", "a")
    d = h.invoke(1, "delete", key="k")
    h.ok(d)
    assert check_acked_writes(h, {}) == []
    assert check_acked_writes(h, {"k": "a"})
    c = h.invoke(1, "cas", (None, "c"), key="k")
    h.ok(c, True)
    assert check_acked_writes(h, {"k": "c"}) == []
    f = h.invoke(1, "cas", ("x", "y"), key="k")
    h.ok(f, False)    # did not swap: not a write
    assert check_acked_writes(h, {"k": "y"})
    assert check_acked_writes(History(), {}) == []
    assert check_acked_writes(History(), {"q": 1})


@settings(max_examples=40, deadline=None)
@given(rng=st.randoms(use_true_random=False), n_ops=st.integers(1, 150),
       n_keys=st.integers(1, 4))
def test_final_state_of_an_atomic_store_passes_and_a_dropped_key_fails(
        rng: random.Random, n_ops: int, n_keys: int) -> None:
    run = simulate_kv_store(rng, n_ops=n_ops, n_keys=n_keys, n_clients=5, info_rate=0.05)
    final = run.final
    assert check_acked_writes(run.history, final) == []
    acked_keys = {op.key for op in run.history.operations()
                  if op.status == "ok" and op.f == "write"}
    if acked_keys:
        key = sorted(acked_keys, key=repr)[0]
        lossy = {k: v for k, v in final.items() if k != key}
        assert check_acked_writes(run.history, lossy)
