"""The serializability (Adya DSG) and atomicity checkers on known-good and known-bad
histories."""

from __future__ import annotations

import random

from giants.core.testing.atomicity import check_all_or_nothing, check_no_lost_writes
from giants.core.testing.generators import simulate_txn_store
from giants.core.testing.serializability import Txn, check_serializable


def test_serial_histories_are_serializable() -> None:
    for seed in range(20):
        txns = simulate_txn_store(random.Random(seed), n_txns=150)
        res = check_serializable(txns)
        assert res.ok, (seed, res.anomalies)


def test_write_skew_is_a_cycle() -> None:
    # both read x=None, y=None; T1 writes x, T2 writes y: fine alone. With reads of the
    # other's key before the other's write, it is the classic write skew (rw both ways).
    t1 = Txn(1, (("r", "x", None), ("r", "y", None), ("w", "x", 1)))
    t2 = Txn(2, (("r", "x", None), ("r", "y", None), ("w", "y", 2)))
    res = check_serializable([t1, t2], version_order={"x": [1], "y": [2]})
    assert not res.ok and res.cycle is not None and set(res.cycle) == {1, 2}


def test_lost_update_is_a_cycle_even_without_version_order() -> None:
    t1 = Txn(1, (("r", "x", None), ("w", "x", 1)))
    t2 = Txn(2, (("r", "x", None), ("w", "x", 2)))
    assert not check_serializable([t1, t2], version_order={"x": [1, 2]}).ok
    assert check_serializable([t1, Txn(2, (("r", "x", 1), ("w", "x", 2)))]).ok


def test_aborted_and_intermediate_reads_and_internal_inconsistency() -> None:
    aborted = Txn(1, (("w", "x", 1),), "aborted")
    reader = Txn(2, (("r", "x", 1),))
    assert any("G1a" in a for a in check_serializable([aborted, reader]).anomalies)
    inter = Txn(3, (("w", "y", 1), ("w", "y", 2)))
    reader2 = Txn(4, (("r", "y", 1),))
    assert any("G1b" in a for a in check_serializable([inter, reader2]).anomalies)
    selfish = Txn(5, (("w", "z", 7), ("r", "z", None)))
    assert any("internal" in a for a in check_serializable([selfish]).anomalies)


def test_unknown_transactions_count_when_observed() -> None:
    t1 = Txn(1, (("r", "x", None), ("w", "x", 1)), "unknown")
    t2 = Txn(2, (("r", "x", 1), ("w", "y", 5)))
    assert check_serializable([t1, t2]).ok
    t3 = Txn(3, (("r", "y", None), ("r", "x", None)))   # saw neither: before both
    assert check_serializable([t1, t2, t3], version_order={"x": [1], "y": [5]}).ok


def test_all_or_nothing() -> None:
    good = {"a": {"t1": True, "t2": False}, "b": {"t1": True}}
    told = {"t1": "committed", "t2": "aborted"}
    assert check_all_or_nothing(good, participants={"t1": ["a", "b"]}, told=told) == []
    split = {"a": {"t1": True}, "b": {"t1": False}}
    assert check_all_or_nothing(split)
    lost = {"a": {"t1": True}, "b": {}}
    assert check_all_or_nothing(lost, participants={"t1": ["a", "b"]}, told=told)
    assert check_all_or_nothing({"a": {"t2": True}}, told=told)
    assert check_all_or_nothing({"a": {"t9": True}}, told=told)


def test_no_lost_writes() -> None:
    writes = [("t1", {"x": 1, "y": 2}), ("t2", {"x": 3, "y": None})]
    assert check_no_lost_writes({"x": 3}, writes) == []
    assert check_no_lost_writes({"x": 1}, writes)
    assert check_no_lost_writes({"x": 3, "y": 2}, writes)
