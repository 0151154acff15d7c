"""The Jepsen-style history recorder: pairing, the recorder's rules, JSON lines."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giants.core.errors import ConnectionLost, NotLeader, Timeout
from giants.core.testing.history import History, freeze
from giants.core.trace import TraceWriter


def test_operations_pair_invocations_with_completions() -> None:
    h = History()
    w = h.invoke(1, "write", 3, key="k", time=0.5)
    r = h.invoke(2, "read", key="k", time=0.6)
    c = h.invoke(3, "cas", (3, 4), key="k", time=0.7)
    p = h.invoke(4, "write", 9, key="k", time=0.8)
    h.ok(w, time=1.0)                   # a write's result defaults to its argument
    h.ok(r, 3, time=1.1)
    h.fail(c, time=1.2, error="NotLeader")
    ops = {op.id: op for op in h.operations()}
    assert [op.id for op in h.operations()] == [w, r, c, p]
    assert (ops[w].status, ops[w].output, ops[w].complete_time) == ("ok", 3, 1.0)
    assert (ops[r].status, ops[r].output, ops[r].key) == ("ok", 3, "k")
    assert (ops[c].status, ops[c].error, ops[c].value) == ("fail", "NotLeader", (3, 4))
    assert ops[p].status == "pending" and ops[p].indeterminate
    assert ops[p].complete_index is None and ops[p].complete_time is None
    assert not ops[w].indeterminate and not ops[c].indeterminate
    assert h.outstanding() == {4: p}
    assert "#1 p2 read 'k' -> 3" in ops[r].describe()


def test_info_retires_the_process() -> None:
    h = History()
    op = h.invoke("c1", "put", 1, key="k")
    h.info(op, error="Timeout")
    assert h.operations()[0].indeterminate
    with pytest.raises(AssertionError, match="retired"):
        h.invoke("c1", "get", key="k")
    h.invoke("c1-2", "get", key="k")    # a fresh process id continues


def test_recorder_rules_are_asserted() -> None:
    h = History()
    op = h.invoke(1, "read")
    with pytest.raises(AssertionError, match="outstanding"):
        h.invoke(1, "read")
    h.ok(op, None)
    with pytest.raises(AssertionError, match="completed twice"):
        h.fail(op)
    with pytest.raises(AssertionError, match="not an invocation"):
        h.ok(op + 1)
    with pytest.raises(AssertionError, match="not an invocation"):
        h.ok(99)


def test_error_maps_definite_to_fail_and_anything_else_to_info() -> None:
    h = History()
    a = h.invoke(1, "put", 1)
    assert h.error(a, NotLeader(hint="n2")) == "fail"
    b = h.invoke(1, "put", 2)
    assert h.error(b, Timeout("no answer")) == "info"
    c = h.invoke(2, "put", 3)
    assert h.error(c, ConnectionLost()) == "info"
    d = h.invoke(3, "put", 4)
    assert h.error(d, RuntimeError("boom")) == "info"   # unknown: may have happened
    statuses = [op.status for op in h.operations()]
    assert statuses == ["fail", "info", "info", "info"]
    error = h.operations()[0].error
    assert error is not None and "NotLeader" in error


def test_time_defaults_to_the_previous_event_and_is_never_read_from_a_clock() -> None:
    h = History()
    a = h.invoke(1, "read")
    assert h.events[0].time == 0.0
    h.ok(a, None, time=2.5)
    b = h.invoke(1, "read")
    assert h.events[2].time == 2.5
    h.ok(b, None, time=1.0)   # a concurrent client may stamp an earlier time
    assert [e.index for e in h] == [0, 1, 2, 3] and len(h) == 4


def test_values_are_frozen_for_hashing() -> None:
    h = History()
    op = h.invoke(1, "txn", [["r", "x", None], ["w", "y", [1, 2]]])
    h.ok(op, [{"a", "b"}, bytearray(b"z")])
    got = h.operations()[0]
    assert got.value == (("r", "x", None), ("w", "y", (1, 2)))
    assert got.output == (frozenset({"a", "b"}), b"z")
    hash(got.value)
    hash(got.output)
    assert freeze({"k": [1]}) == {"k": (1,)}


def test_trace_sink_gets_one_op_event_per_history_event() -> None:
    trace = TraceWriter()
    h = History(trace=trace)
    op = h.invoke(7, "put", b"v", key="k", time=1.0)
    h.ok(op, time=2.0)
    assert len(trace.lines) == 2
    assert '"kind":"op"' in trace.lines[0] and '"what":"invoke"' in trace.lines[0]
    assert '"node":"client-7"' in trace.lines[1] and '"what":"ok"' in trace.lines[1]


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.frozensets(st.integers(), max_size=3),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["ok", "fail", "info", ""]),
                                values, values, st.sampled_from([None, "k", 3])),
                      max_size=12))
def test_json_lines_round_trip(steps: list[tuple[int, str, Any, Any, Any]],
                               tmp_path_factory: pytest.TempPathFactory) -> None:
    h = History()
    fresh = 100
    for n, (process, outcome, arg, result, key) in enumerate(steps):
        p = process if process not in h.outstanding() else fresh + n
        try:
            op = h.invoke(p, "f", arg, key=key, time=float(n))
        except AssertionError:   # retired: use a fresh one
            op = h.invoke(fresh + n, "f", arg, key=key, time=float(n))
        if outcome == "ok":
            h.ok(op, result, time=n + 0.5)
        elif outcome in ("fail", "info"):
            getattr(h, outcome)(op, result, time=n + 0.5, error="why")
    text = h.to_jsonl()
    loaded = History.from_jsonl(text)
    assert loaded.events == h.events
    assert loaded.operations() == h.operations()
    assert loaded.to_jsonl() == text
    path = str(tmp_path_factory.mktemp("h") / "h.jsonl")
    h.save(path)
    assert History.load(path).events == h.events


def test_loading_rejects_malformed_lines() -> None:
    with pytest.raises(ValueError, match="line 1"):
        History.from_jsonl("not json\n")
    with pytest.raises(ValueError, match="line 1"):
        History.from_jsonl('{"type": "bogus", "time": 0}\n')
    good = History()
    op = good.invoke(1, "read")
    good.ok(op, 1)
    first, second = good.to_jsonl().splitlines()
    with pytest.raises(ValueError, match="line 3"):
        History.from_jsonl(first + "\n" + second + "\n" + second + "\n")   # ok twice
    with pytest.raises(ValueError, match="line 1"):
        History.from_jsonl(second + "\n")                                  # ok of nothing
    assert History.from_jsonl("\n" + first + "\n\n").operations()[0].status == "pending"


def test_with_result_changes_one_ok_and_nothing_else() -> None:
    h = History()
    a = h.invoke(1, "read", key="k", time=1.0)
    b = h.invoke(2, "write", 5, key="k", time=1.5)
    h.ok(a, 5, time=2.0)
    h.info(b, time=3.0, error="Timeout")
    changed = h.with_result(a, 99)
    assert changed.operations()[0].output == 99 and h.operations()[0].output == 5
    assert changed.operations()[1] == h.operations()[1]
    assert [e.time for e in changed] == [e.time for e in h]
    with pytest.raises(AssertionError, match="no ok"):
        h.with_result(b, 1)
