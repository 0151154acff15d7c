"""The linearizability checker: classic violations rejected, correct histories accepted.

Known-bad histories follow the anomalies Jepsen/Knossos reports (stale reads, reads of
values never written, writes seen in different orders, lost compare-and-set, ...).
Property tests: every history of a correct-by-construction store is accepted, one read
changed to a value nobody wrote is rejected, and the search agrees with a brute-force
enumeration of orders on small random histories.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from giants.core.testing.generators import simulate_kv_store
from giants.core.testing.history import History, Operation
from giants.core.testing.linearizability import check_kv_linearizable, check_linearizable
from giants.core.testing.models import UNKNOWN, Counter, KVMap, Model, Register, SetModel

# -- helpers ---------------------------------------------------------------------------


def ok_op(h: History, process: int, f: str, value: Any = None, result: Any = None,
          key: Any = None) -> int:
    """Invoke and immediately complete one operation (it precedes everything later)."""
    op = h.invoke(process, f, value, key=key)
    h.ok(op, value if result is None and f != "read" else result)
    return op


def brute_force(ops: list[Operation], model: Model) -> bool:
    """Try every order (respecting real time) of every allowed subset: the definition.

    Memoised on (operations left, state) only, so it stays usable up to a few dozen
    operations; none of the checker's reductions are used.
    """
    ops = [o for o in ops if o.status != "fail"]
    failed: set[tuple[frozenset[int], Any]] = set()

    def must_precede(a: Operation, b: Operation) -> bool:
        return (not a.indeterminate and a.complete_index is not None
                and a.complete_index < b.invoke_index)

    def search(left: frozenset[int], state: Any) -> bool:
        if all(ops[i].indeterminate for i in left):
            return True
        if (left, state) in failed:
            return False
        for i in left:
            if any(must_precede(ops[j], ops[i]) for j in left if j != i):
                continue
            o = ops[i]
            legal, new = model.step(state, o.f, o.key, o.value,
                                    UNKNOWN if o.indeterminate else o.output)
            if legal and search(left - {i}, new):
                return True
        failed.add((left, state))
        return False

    return search(frozenset(range(len(ops))), model.init())


# -- classic violations ----------------------------------------------------------------


def test_stale_read_after_completed_write() -> None:
    h = History()
    ok_op(h, 1, "write", 1)
    ok_op(h, 2, "read", result=None)
    res = check_linearizable(h)
    assert not res.ok and not res.timed_out
    assert res.stuck is not None and res.stuck.f == "read" and res.stuck.output is None
    assert "cannot be linearized" in res.explain()


def test_read_of_a_value_never_written() -> None:
    h = History()
    w = h.invoke(1, "write", 1)
    r = h.invoke(2, "read")
    h.ok(r, 7)
    h.ok(w)
    res = check_linearizable(h)
    assert not res.ok and res.stuck is not None and res.stuck.output == 7


def test_two_readers_see_concurrent_writes_in_opposite_orders() -> None:
    h = History()
    w1 = h.invoke(1, "write", 1)
    w2 = h.invoke(2, "write", 2)
    ok_op(h, 3, "read", result=1)
    ok_op(h, 4, "read", result=2)
    ok_op(h, 3, "read", result=2)   # reader 3: 1 then 2, so write 1 came first
    ok_op(h, 4, "read", result=1)   # reader 4: 2 then 1, so write 2 came first
    h.ok(w1)
    h.ok(w2)
    assert not check_linearizable(h).ok
    # Each reader alone is fine: the writes are concurrent, either order is allowed.
    h2 = History()
    w1 = h2.invoke(1, "write", 1)
    w2 = h2.invoke(2, "write", 2)
    ok_op(h2, 3, "read", result=1)
    ok_op(h2, 4, "read", result=2)
    ok_op(h2, 3, "read", result=2)
    h2.ok(w1)
    h2.ok(w2)
    assert check_linearizable(h2).ok


def test_lost_compare_and_set() -> None:
    h = History()
    ok_op(h, 1, "write", 0)
    a = h.invoke(1, "cas", (0, 1))
    b = h.invoke(2, "cas", (0, 2))
    h.ok(a, True)
    h.ok(b, True)   # both swapped from 0: one of them was lost
    assert not check_linearizable(h).ok
    h = History()
    ok_op(h, 1, "write", 0)
    ok_op(h, 1, "cas", (0, 1), result=True)
    ok_op(h, 2, "read", result=0)   # the swap vanished
    assert not check_linearizable(h).ok


def test_read_your_write_violated_across_clients() -> None:
    h = History()
    ok_op(h, 1, "write", 1)
    ok_op(h, 2, "write", 2)
    ok_op(h, 1, "read", result=1)   # client 1 sees its own, overwritten, write
    assert not check_linearizable(h).ok


def test_info_op_cannot_explain_a_read_that_finished_before_it_began() -> None:
    h = History()
    ok_op(h, 2, "read", result=1)
    w = h.invoke(1, "write", 1)
    h.info(w, error="Timeout")
    assert not check_linearizable(h).ok


def test_failed_op_explains_nothing() -> None:
    h = History()
    w = h.invoke(1, "write", 1)
    h.fail(w, error="NotLeader")
    ok_op(h, 2, "read", result=1)
    assert not check_linearizable(h).ok


# -- accepted histories ----------------------------------------------------------------


def test_concurrent_read_may_see_old_or_new() -> None:
    for seen in (None, 1):
        h = History()
        w = h.invoke(1, "write", 1)
        ok_op(h, 2, "read", result=seen)
        h.ok(w)
        assert check_linearizable(h).ok, seen


def test_indeterminate_write_may_take_effect_late_or_never() -> None:
    h = History()
    w = h.invoke(1, "write", 1)
    h.info(w, error="Timeout")
    ok_op(h, 2, "read", result=None)    # not yet
    ok_op(h, 2, "read", result=1)       # now
    ok_op(h, 2, "read", result=1)
    assert check_linearizable(h).ok
    never = History()
    never.invoke(1, "write", 1)         # never completed
    ok_op(never, 2, "read", result=None)
    assert check_linearizable(never).ok
    # ... but once it took effect it cannot be undone.
    h2 = History()
    w = h2.invoke(1, "write", 1)
    h2.info(w)
    ok_op(h2, 2, "read", result=1)
    ok_op(h2, 2, "read", result=None)
    assert not check_linearizable(h2).ok


def test_cas_that_did_not_swap_is_checked_too() -> None:
    h = History()
    ok_op(h, 1, "write", 5)
    ok_op(h, 2, "cas", (4, 6), result=False)
    ok_op(h, 2, "read", result=5)
    assert check_linearizable(h).ok
    h = History()
    ok_op(h, 1, "write", 5)
    ok_op(h, 2, "cas", (5, 6), result=False)   # it should have swapped
    assert not check_linearizable(h).ok


def test_set_and_counter_models() -> None:
    h = History()
    a = h.invoke(1, "add", "x")
    ok_op(h, 2, "read", result=frozenset())
    h.ok(a)
    ok_op(h, 2, "read", result=frozenset({"x"}))
    assert check_linearizable(h, SetModel()).ok
    ok_op(h, 3, "read", result=frozenset())
    assert not check_linearizable(h, SetModel()).ok
    c = History()
    ok_op(c, 1, "add", 2)
    i = c.invoke(2, "add", 3)
    c.info(i)
    ok_op(c, 1, "read", result=5)
    assert check_linearizable(c, Counter()).ok
    ok_op(c, 1, "read", result=2)
    assert not check_linearizable(c, Counter()).ok


# -- key-value histories, results ------------------------------------------------------


def test_kv_is_checked_per_key_and_names_the_failing_key() -> None:
    h = History()
    ok_op(h, 1, "put", "a1", key="a")
    ok_op(h, 2, "put", "b1", key="b")
    ok_op(h, 1, "get", result="a1", key="a")
    ok_op(h, 2, "get", result=None, key="b")   # stale
    ok_op(h, 3, "delete", key="a")
    ok_op(h, 3, "get", result=None, key="a")
    res = check_kv_linearizable(h)
    assert not res.ok and res.key == "b" and res.failed_keys == ("b",)
    assert res.explain().startswith("key 'b': not linearizable")
    assert res.stuck is not None and res.stuck.key == "b"
    assert check_kv_linearizable([o for o in h.operations() if o.key == "a"]).ok


def test_budget_exhaustion_is_never_ok() -> None:
    run = simulate_kv_store(random.Random(1), n_ops=200, n_keys=1, n_clients=5)
    assert check_kv_linearizable(run.history).ok
    res = check_kv_linearizable(run.history, max_steps=10)
    assert not res.ok and res.timed_out and not bool(res)
    assert "budget exhausted" in res.explain()


def test_history_round_trip_gives_the_same_verdict(tmp_path: Any) -> None:
    run = simulate_kv_store(random.Random(3), n_ops=300, n_keys=3, n_clients=6)
    path = str(tmp_path / "h.jsonl")
    run.history.save(path)
    loaded = History.load(path)
    assert loaded.operations() == run.history.operations()
    assert check_kv_linearizable(loaded).ok


# -- properties ------------------------------------------------------------------------

store_params = st.fixed_dictionaries({
    "n_ops": st.integers(1, 120),
    "n_keys": st.integers(1, 4),
    "n_clients": st.integers(1, 8),
    "info_rate": st.sampled_from([0.0, 0.02, 0.1]),
    "fail_rate": st.sampled_from([0.0, 0.05]),
})


@settings(max_examples=40, deadline=None)
@given(rng=st.randoms(use_true_random=False), params=store_params)
def test_histories_of_an_atomic_store_are_accepted(rng: random.Random,
                                                   params: dict[str, Any]) -> None:
    run = simulate_kv_store(rng, **params)
    res = check_kv_linearizable(run.history)
    assert res.ok, res.explain()


@settings(max_examples=40, deadline=None)
@given(rng=st.randoms(use_true_random=False), params=store_params, pick=st.integers(0))
def test_a_read_of_a_never_written_value_is_rejected(rng: random.Random,
                                                     params: dict[str, Any], pick: int) -> None:
    run = simulate_kv_store(rng, **params)
    reads = [op for op in run.history.operations() if op.f == "read" and op.status == "ok"]
    if not reads:
        return
    target = reads[pick % len(reads)]
    res = check_kv_linearizable(run.history.with_result(target.id, "never-written"))
    assert not res.ok and not res.timed_out
    assert res.key == target.key


def random_register_history(rng: random.Random, n_ops: int, n_procs: int) -> History:
    """Arbitrary (mostly wrong) small histories over values 0..2, some info/fail/pending."""
    h = History()
    live = list(range(n_procs))
    outstanding: dict[int, tuple[int, str, Any]] = {}
    started, fresh = 0, n_procs
    while started < n_ops or outstanding:
        idle = [p for p in live if p not in outstanding]
        if started < n_ops and idle and (not outstanding or rng.random() < 0.5):
            p = rng.choice(idle)
            f = rng.choice(["read", "write", "cas"])
            value = (None if f == "read" else rng.randrange(3) if f == "write"
                     else (rng.choice([None, 0, 1, 2]), rng.randrange(3)))
            outstanding[p] = (h.invoke(p, f, value), f, value)
            started += 1
            continue
        p = rng.choice(sorted(outstanding))
        op, f, value = outstanding.pop(p)
        roll = rng.random()
        if roll < 0.2:   # info, or never completed: the process is replaced
            if roll < 0.15:
                h.info(op)
            live[live.index(p)] = fresh
            fresh += 1
        elif roll < 0.25:
            h.fail(op)
        else:
            h.ok(op, rng.choice([None, 0, 1, 2]) if f == "read"
                 else rng.choice([True, False]) if f == "cas" else value)
    return h


@settings(max_examples=300, deadline=None)
@given(rng=st.randoms(use_true_random=False), n_ops=st.integers(0, 7),
       n_procs=st.integers(1, 3))
def test_search_agrees_with_brute_force(rng: random.Random, n_ops: int, n_procs: int) -> None:
    h = random_register_history(rng, n_ops, n_procs)
    expected = brute_force(h.operations(), Register())
    res = check_linearizable(h, Register())
    assert res.ok == expected, h.to_jsonl()
    assert not res.timed_out


@settings(max_examples=100, deadline=None)
@given(rng=st.randoms(use_true_random=False), n_ops=st.integers(0, 6))
def test_per_key_check_agrees_with_the_whole_map(rng: random.Random, n_ops: int) -> None:
    # P-compositionality: checking key by key gives the verdict of the whole-map model.
    h = random_register_history(rng, n_ops, 3)
    keyed = History()
    keys: dict[int, str] = {}
    for e in h:
        if e.type == "invoke":
            keys[e.op] = rng.choice("ab")
            keyed.invoke(e.process, e.f, e.value, key=keys[e.op])
        else:
            complete: Callable[..., None] = getattr(keyed, e.type)
            complete(e.op, e.value)
    whole = check_linearizable(keyed, KVMap())
    assert check_kv_linearizable(keyed).ok == whole.ok == brute_force(keyed.operations(),
                                                                       KVMap())


@settings(max_examples=60, deadline=None)
@given(rng=st.randoms(use_true_random=False), n_ops=st.integers(5, 24),
       n_clients=st.integers(2, 6), mutations=st.integers(0, 2))
def test_search_agrees_with_brute_force_on_store_histories(
        rng: random.Random, n_ops: int, n_clients: int, mutations: int) -> None:
    # Many info operations on one key, and reads changed to other written values (which
    # may or may not still be explainable): where the search's reductions matter.
    run = simulate_kv_store(rng, n_ops=n_ops, n_keys=1, n_clients=n_clients, info_rate=0.12,
                            fail_rate=0.05)
    h = run.history
    for _ in range(mutations):
        reads = [op for op in h.operations() if op.f == "read" and op.status == "ok"]
        if reads:
            h = h.with_result(rng.choice(reads).id, rng.choice([None, *sorted(run.written)]))
    res = check_kv_linearizable(h)
    assert not res.timed_out
    assert res.ok == brute_force(h.operations(), KVMap().key_model()), h.to_jsonl()
