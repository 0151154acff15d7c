"""Basic (single-decree) Paxos: one round, the dueling-proposers livelock and its fix,
and the safety invariants on every step under loss, duplication, reordering and
acceptor crashes ("Paxos Made Simple" §2)."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest

from giants.core.envelope import Envelope
from giants.core.process import Durable, Io
from giants.core.sim import SimNetworkOptions
from giants.paxos import BasicPaxosNode
from giants.paxos._messages import BasicAccept, BasicNack, BasicPrepare, BasicPromise
from giants.paxos.scenarios import ACCEPTORS, _basic_world, _give_value, run_basic_round, run_duel


def _io(node: str) -> Io:
    ids = iter(range(1, 1000))
    return Io(node_id=node, now=0.0, rng=random.Random(1), next_msg_id=lambda: next(ids))


def _acceptor(durable: Durable | None = None) -> BasicPaxosNode:
    return BasicPaxosNode("a1", durable or Durable(), acceptors=ACCEPTORS, learners=ACCEPTORS,
                          proposers=["p1", "p2"])


def test_one_round_chooses_the_value_in_two_round_trips() -> None:
    res = run_basic_round(seed=0)
    assert res.chosen == "v1" and res.ballots == 1
    # 2 round trips of ~10 ms each, plus at most one 1 ms tick of start-up
    assert 0.035 <= res.chosen_at <= 0.046


def test_naive_dueling_proposers_livelock() -> None:
    res = run_duel("naive", seed=0, duration_s=1.0)
    assert res.chosen is None and res.learnt == {}
    assert res.ballots > 50  # both kept starting ballots, none completed


def test_distinguished_proposer_with_backoff_resolves_the_duel(giants_seeds: Any) -> None:
    for seed in giants_seeds(10):
        res = run_duel("distinguished", seed=seed, duration_s=2.0)
        assert res.chosen in ("from-p1", "from-p2"), f"seed {seed}: {res}"
        assert len(res.learnt) == 5 and set(res.learnt.values()) == {res.chosen}


def test_acceptor_state_is_durable_before_the_reply() -> None:
    a = _acceptor()
    io = _io("a1")
    a.receive(io, Envelope("p1", "a1", 1, None, BasicPrepare((3, "p1"))))
    io2 = _io("a1")
    a.receive(io2, Envelope("p1", "a1", 2, None, BasicAccept((3, "p1"), "v")))
    d = Durable()
    for op in io.persists + io2.persists:
        d.apply(op)
    restarted = _acceptor(d)
    assert restarted.promised == (3, "p1") and restarted.accepted == ((3, "p1"), "v")
    io3 = _io("a1")
    restarted.receive(io3, Envelope("p2", "a1", 3, None, BasicPrepare((4, "p2"))))
    assert [e.body for e in io3.sends] == [BasicPromise((4, "p2"), (3, "p1"), "v")]
    io4 = _io("a1")
    restarted.receive(io4, Envelope("p1", "a1", 4, None, BasicAccept((3, "p1"), "w")))
    assert [e.body for e in io4.sends] == [BasicNack((3, "p1"), (4, "p2"))]
    assert io4.persists == [] and restarted.accepted == ((3, "p1"), "v")


def test_unknown_sender_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    a = _acceptor()
    io = _io("a1")
    with caplog.at_level(logging.WARNING, logger="giants.paxos.basic"):
        a.receive(io, Envelope("mallory", "a1", 1, None, BasicPrepare((9, "mallory"))))
    assert io.sends == [] and io.persists == [] and a.promised == (0, "")
    assert "unknown sender mallory" in caplog.text


@pytest.mark.sim
@pytest.mark.parametrize("mode", ["naive", "distinguished"])
def test_basic_invariants_hold_under_faults(mode: str, giants_seeds: Any) -> None:
    """Random delays, 15% loss, duplication, reordering, acceptor crashes and restarts:
    at most one value chosen, learners learn only it, no promise goes back."""
    net = SimNetworkOptions(min_delay_s=0.001, max_delay_s=0.02, loss=0.15, duplicate=0.15,
                            reorder=0.15)
    for seed in giants_seeds(30):
        _faulty_instance(seed, mode, net)


def _faulty_instance(seed: int, mode: str, net: SimNetworkOptions) -> None:
    sim, checker = _basic_world(seed, mode, ["p1", "p2"], None, net)
    _give_value(sim, "p1", "one")
    _give_value(sim, "p2", "two")
    rng = random.Random(seed)
    for i in range(4):
        victim = rng.choice(ACCEPTORS)
        sim.at(0.02 + 0.07 * i, lambda v=victim: sim.crash(v))
        sim.at(0.05 + 0.07 * i, lambda v=victim: sim.restart(v))
    sim.run_until(1.0)
    learnt = {n: p.chosen for n in [*ACCEPTORS, "p1", "p2"]
              if (p := sim.process(n)) is not None and p.chosen_at is not None}  # type: ignore[attr-defined]
    assert set(learnt.values()) <= {checker.chosen}, f"seed {seed}: {learnt}"
    if mode == "distinguished":
        assert checker.chosen in ("one", "two"), f"seed {seed}: nothing chosen"
