"""The serializability checker (Adya's DSG): classic anomalies rejected and classified,
histories of a serial store accepted."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from giants.core.testing.generators import simulate_txn_store
from giants.core.testing.serializability import Txn, check_serializable


def test_write_skew_is_a_g2_cycle() -> None:
    # Both read x and y empty, each writes the other key: fine alone, not together.
    t1 = Txn("T1", (("r", "x", None), ("r", "y", None), ("w", "x", 1)))
    t2 = Txn("T2", (("r", "x", None), ("r", "y", None), ("w", "y", 2)))
    res = check_serializable([t1, t2], version_order={"x": [1], "y": [2]})
    assert not res.ok and res.kind == "G2"
    assert res.cycle is not None and set(res.cycle) == {"T1", "T2"}
    assert sorted(e.type for e in res.cycle_edges) == ["rw", "rw"]
    assert "T1 -rw(y)-> T2" in res.explain() and "T2 -rw(x)-> T1" in res.explain()


def test_lost_update_is_g_single() -> None:
    t1 = Txn(1, (("r", "x", 0), ("w", "x", 1)))
    t2 = Txn(2, (("r", "x", 0), ("w", "x", 2)))
    t0 = Txn(0, (("w", "x", 0),))
    res = check_serializable([t0, t1, t2], version_order={"x": [0, 1, 2]})
    assert not res.ok and res.kind == "G-single"
    assert [e.type for e in res.cycle_edges].count("rw") == 1
    # Without the store's order it is still a cycle: both read 0, so each precedes the
    # other's write.
    res = check_serializable([t0, t1, t2])
    assert not res.ok and res.kind == "G2" and set(res.cycle or ()) == {1, 2}
    # The serial version (T2 read T1's write) is fine, with or without a version order.
    assert check_serializable([t0, t1, Txn(2, (("r", "x", 1), ("w", "x", 2)))],
                              version_order={"x": [0, 1, 2]}).ok
    assert check_serializable([t0, t1, Txn(2, (("r", "x", 1), ("w", "x", 2)))]).ok


def test_circular_information_flow_is_g1c() -> None:
    t1 = Txn(1, (("w", "x", 1), ("r", "y", 2)))
    t2 = Txn(2, (("w", "y", 2), ("r", "x", 1)))
    res = check_serializable([t1, t2])
    assert not res.ok and res.kind == "G1c"
    assert {e.type for e in res.cycle_edges} == {"wr"}


def test_write_cycle_is_g0_and_outranks_weaker_cycles() -> None:
    t1 = Txn(1, (("w", "x", 1), ("w", "y", 1), ("r", "z", None)))
    t2 = Txn(2, (("w", "x", 2), ("w", "y", 2), ("w", "z", 2)))
    res = check_serializable([t1, t2], version_order={"x": [1, 2], "y": [2, 1], "z": [2]})
    assert not res.ok and res.kind == "G0"
    assert {e.type for e in res.cycle_edges} == {"ww"}


def test_aborted_intermediate_and_garbage_reads() -> None:
    aborted = Txn(1, (("w", "x", 1),), "aborted")
    res = check_serializable([aborted, Txn(2, (("r", "x", 1),))])
    assert not res.ok and any(a.startswith("G1a") for a in res.anomalies)
    inter = Txn(3, (("w", "y", 1), ("w", "y", 2)))
    res = check_serializable([inter, Txn(4, (("r", "y", 1),))])
    assert not res.ok and any(a.startswith("G1b") for a in res.anomalies)
    res = check_serializable([Txn(5, (("r", "z", 42),))])
    assert not res.ok and any(a.startswith("garbage read") for a in res.anomalies)
    # An aborted transaction's own reads do not matter.
    assert check_serializable([aborted, Txn(6, (("r", "q", 9),), "aborted")]).ok


def test_unknown_outcome_counts_as_committed_only_when_observed() -> None:
    unknown = Txn(1, (("r", "x", None), ("w", "x", 1), ("w", "y", 1)), "unknown")
    reader = Txn(2, (("r", "x", 1), ("r", "y", None)))   # saw half of it: fractured
    res = check_serializable([unknown, reader])
    assert not res.ok and res.kind == "G-single"
    # Nobody saw it: as if it never happened, so a reader of the initial values is fine.
    assert check_serializable([unknown, Txn(3, (("r", "x", None), ("r", "y", None)))]).ok
    # Seen only by an aborted transaction: still not evidence that it committed.
    seen_by_aborted = Txn(4, (("r", "x", 1),), "aborted")
    assert check_serializable([unknown, seen_by_aborted,
                               Txn(3, (("r", "x", None), ("r", "y", None)))]).ok


def test_serial_runs_with_the_store_version_order() -> None:
    txns = simulate_txn_store(random.Random(7), n_txns=300, abort_rate=0.0, unknown_rate=0.0)
    order: dict[Any, list[Any]] = {}
    for t in txns:
        final: dict[Any, Any] = {}
        for kind, key, value in t.ops:
            if kind == "w":
                final[key] = value
        for key, value in final.items():
            order.setdefault(key, []).append(value)
    res = check_serializable(txns, version_order=order)
    assert res.ok, res.explain()
    assert res.edges > 0
    # Swapping two transactions' places in the order of one key breaks it.
    key = max(order, key=lambda k: len(order[k]))
    swapped = dict(order)
    swapped[key] = [order[key][1], order[key][0], *order[key][2:]]
    assert not check_serializable(txns, version_order=swapped).ok


txn_params = st.fixed_dictionaries({
    "n_txns": st.integers(1, 120),
    "n_keys": st.integers(1, 6),
    "max_ops": st.integers(1, 5),
    "abort_rate": st.sampled_from([0.0, 0.1, 0.3]),
    "unknown_rate": st.sampled_from([0.0, 0.1]),
})


@settings(max_examples=60, deadline=None)
@given(rng=st.randoms(use_true_random=False), params=txn_params)
def test_histories_of_a_serial_store_are_accepted(rng: random.Random,
                                                  params: dict[str, Any]) -> None:
    res = check_serializable(simulate_txn_store(rng, **params))
    assert res.ok, res.explain()


@settings(max_examples=60, deadline=None)
@given(rng=st.randoms(use_true_random=False), params=txn_params, pick=st.integers(0))
def test_a_read_of_a_never_written_value_is_rejected(rng: random.Random,
                                                     params: dict[str, Any], pick: int) -> None:
    txns = [t for t in simulate_txn_store(rng, **params) if t.status == "committed"]
    reads = [(n, i) for n, t in enumerate(txns) for i, op in enumerate(t.ops)
             if op[0] == "r" and not any(o[0] == "w" and o[1] == op[1] for o in t.ops[:i])]
    if not reads:
        return
    n, i = reads[pick % len(reads)]
    ops = list(txns[n].ops)
    ops[i] = ("r", ops[i][1], "never-written")
    txns[n] = Txn(txns[n].id, tuple(ops), "committed")
    res = check_serializable(txns)
    assert not res.ok
    assert any("never-written" in a and "garbage" in a for a in res.anomalies)
