"""The invariant checkers catch what they claim to (planted violations), and the golden
trace of one Basic Paxos round has exactly the paper's messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from giants.core.envelope import Envelope
from giants.core.process import Durable, Io
from giants.core.sim import Simulation
from giants.core.trace import TraceWriter
from giants.core.trace_html import render_html
from giants.paxos import BasicPaxosNode
from giants.paxos._config import Config
from giants.paxos._messages import BasicPrepare
from giants.paxos.invariants import BasicPaxosChecker, InvariantViolation, _Chosen
from giants.paxos.scenarios import ACCEPTORS, run_basic_round

VOTERS = Config({"a": "a", "b": "b", "c": "c"}, {})


def test_checker_flags_two_values_in_one_ballot() -> None:
    c = _Chosen(seed=0)
    c.see_accept("a", 1, (1, "p"), "x", VOTERS)
    with pytest.raises(InvariantViolation, match="two values"):
        c.see_accept("b", 1, (1, "p"), "y", VOTERS)


def test_checker_flags_a_chosen_value_changing() -> None:
    c = _Chosen(seed=0)
    c.see_accept("a", 1, (1, "p"), "x", VOTERS)
    assert c.see_accept("b", 1, (1, "p"), "x", VOTERS)  # chosen: a majority in (1, p)
    with pytest.raises(InvariantViolation, match="was chosen"):
        c.see_accept("c", 1, (2, "q"), "y", VOTERS)


def test_checker_flags_going_back_on_a_promise_and_accepting_below_it() -> None:
    c = _Chosen(seed=0)
    c.see_promise("a", (5, "p"))
    with pytest.raises(InvariantViolation, match="went back"):
        c.see_promise("a", (4, "q"))
    with pytest.raises(InvariantViolation, match="below its promise"):
        c.see_accept("a", 1, (3, "q"), "x", VOTERS)


def test_checker_flags_learning_an_unchosen_value() -> None:
    c = _Chosen(seed=0)
    c.see_accept("a", 1, (1, "p"), "x", VOTERS)
    with pytest.raises(InvariantViolation, match="never chosen"):
        c.see_learn("b", 1, "x")


class ForgetfulAcceptor(BasicPaxosNode):
    """A planted bug: promises without persisting them."""

    def _on_prepare(self, io: Io, src: str, m: Any) -> None:
        super()._on_prepare(io, src, m)
        io.persists.clear()


def test_checker_catches_an_acceptor_that_does_not_persist_its_promise() -> None:
    sim = Simulation(0)
    sim.add_process("a1", lambda d: ForgetfulAcceptor(
        "a1", d, acceptors=ACCEPTORS, learners=ACCEPTORS, proposers=["p1"], audit=[]))
    BasicPaxosChecker(sim, ["a1"], ACCEPTORS).attach()
    sim.invoke("a1", lambda p, io: p.receive(io, Envelope("p1", "a1", 1, None,
                                                          BasicPrepare((3, "p1")))))
    sim.run_for(0.05)  # the checker sees the promise
    sim.crash("a1")
    with pytest.raises(InvariantViolation, match="went back on its promise"):
        sim.restart("a1")
        sim.run_for(0.05)


def test_golden_basic_round_trace() -> None:
    trace = TraceWriter()
    res = run_basic_round(seed=0, trace=trace)
    assert res.chosen == "v1"
    events = [json.loads(line) for line in trace.lines]
    sends: dict[str, int] = {}
    for ev in events:
        if ev["kind"] == "send":
            sends[ev["msg"]] = sends.get(ev["msg"], 0) + 1
    # 3 prepares, 3 promises, 3 accepts, each acceptor tells 3 acceptors + the proposer
    assert sends == {"BasicPrepare": 3, "BasicPromise": 3, "BasicAccept": 3, "BasicAccepted": 12}
    chosen = [ev["node"] for ev in events if ev["kind"] == "state" and ev["what"] == "basic.chosen"]
    assert sorted(chosen) == ["a1", "a2", "a3", "p1"]
    page = render_html(events)
    assert "BasicPrepare" in page and "<svg" in page


def test_basic_acceptor_rebuilds_from_durable() -> None:
    d = Durable({"basic.acc": {"promised": [2, "p2"], "accepted": [1, "p1", "v"]}})
    node = BasicPaxosNode("a1", d, acceptors=ACCEPTORS, learners=ACCEPTORS, proposers=["p1"])
    assert node.promised == (2, "p2") and node.accepted == ((1, "p1"), "v")
