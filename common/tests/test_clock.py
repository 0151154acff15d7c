"""Tests for giants.core.clock: tick arithmetic and the TrueTime-style interval clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from giants.core import clock as clock_module
from giants.core.clock import IntervalClock, TTInterval, seconds_for, ticks_for, wall_now
from giants.core.errors import LocalProtocolError


class FakeTime:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_interval_is_reading_plus_minus_epsilon() -> None:
    ft = FakeTime(100.0)
    c = IntervalClock(ft, epsilon_s=0.007)
    iv = c.now()
    assert iv == TTInterval(100.0 - 0.007, 100.0 + 0.007)
    assert iv.width == pytest.approx(0.014) and iv.midpoint == pytest.approx(100.0)
    assert iv.contains(100.0) and not iv.contains(100.01)


def test_after_and_before_are_definite() -> None:
    ft = FakeTime(10.0)
    c = IntervalClock(ft, epsilon_s=0.5)
    assert not c.after(9.7) and not c.before(10.3)  # inside the uncertainty: neither
    assert c.after(9.4) and c.before(10.6)
    ft.t = 11.0
    assert c.after(10.4)


def test_commit_wait_makes_after_true() -> None:
    """Spanner §4.1.2: after waiting wait_s(s), after(s) holds."""
    ft = FakeTime(50.0)
    c = IntervalClock(ft, epsilon_s=0.004)
    s = c.now().latest  # a commit timestamp chosen as TT.now().latest
    w = c.wait_s(s)
    assert w == pytest.approx(0.008, abs=1e-5)
    ft.t += w
    assert c.after(s) and c.wait_s(s) == 0.0


@given(true_t=st.floats(0, 1e6), eps=st.floats(0, 1.0), skew=st.floats(-2.0, 2.0))
def test_interval_contains_true_time_iff_skew_within_epsilon(
        true_t: float, eps: float, skew: float) -> None:
    c = IntervalClock(lambda: true_t, epsilon_s=eps, skew_s=skew)
    iv = c.now()
    if c.holds():
        assert iv.earliest <= true_t + 1e-6 and true_t - 1e-6 <= iv.latest
    elif abs(skew) > eps + 1e-6:
        assert not iv.contains(true_t)


def test_skew_and_epsilon_are_injectable() -> None:
    ft = FakeTime(0.0)
    c = IntervalClock(ft, epsilon_s=0.001)
    c.set_skew(0.5)
    assert c.local() == 0.5 and not c.holds()
    assert c.after(0.4)  # a fast clock claims a time that has not come yet
    c.set_epsilon(0.6)
    assert c.holds() and not c.after(0.4)
    with pytest.raises(LocalProtocolError):
        c.set_epsilon(-1.0)
    with pytest.raises(LocalProtocolError):
        IntervalClock(ft, epsilon_s=float("nan"))


def test_ticks_for() -> None:
    assert ticks_for(0.3, 0.1) == 3
    assert ticks_for(0.31, 0.1) == 4
    assert ticks_for(0.0, 0.1) == 0
    assert ticks_for(1.0, 0.3) == 4
    assert seconds_for(4, 0.25) == 1.0
    with pytest.raises(LocalProtocolError):
        ticks_for(1.0, 0.0)
    with pytest.raises(LocalProtocolError):
        ticks_for(-1.0, 0.1)


def test_wall_now_is_epoch_seconds() -> None:
    assert wall_now() > 1_600_000_000


def test_interval_logic_imports_no_clock() -> None:
    """Sans-I/O: the module imports no time/trio at module scope."""
    tree = ast.parse(Path(clock_module.__file__).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name.split(".")[0] for n in top for a in n.names} | {
        (n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
    assert not names & {"time", "trio", "random", "os", "socket"}
