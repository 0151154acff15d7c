"""Clocks: tick arithmetic and a TrueTime-style uncertainty-interval clock.

Spanner (OSDI 2012) §3: ``TT.now()`` returns an interval ``[earliest, latest]`` that is
guaranteed to contain the absolute time at which it was called; ``TT.after(t)`` is true
if ``t`` has definitely passed and ``TT.before(t)`` if ``t`` has definitely not
arrived. Commit wait (§4.1.2) waits until ``TT.after(s)`` holds for the commit
timestamp ``s``.

``IntervalClock`` is sans-I/O: it reads time only through the ``now_fn`` it is given
(virtual time in the simulator, ``trio.current_time`` or ``wall_now`` on a real host)
and never sleeps. Its error bound ``epsilon_s`` and the node's clock error ``skew_s``
are injectable and can change at run time, which is how the simulator's
``clock_skew`` nemesis breaks (or stresses) the TrueTime assumption: the interval
contains true time exactly while ``abs(skew_s) <= epsilon_s``.

Ticks: sans-I/O cores count time in ticks of ``tick_s`` seconds; ``ticks_for`` turns a
duration into the whole number of ticks that covers it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from giants.core.errors import LocalProtocolError

__all__ = ["TTInterval", "IntervalClock", "ticks_for", "seconds_for", "wall_now"]

NowFn = Callable[[], float]


def wall_now() -> float:
    """Seconds since the epoch from the OS wall clock (the default for real hosts)."""
    import time  # kept out of module scope: the interval logic never reads a clock

    return time.time()


def ticks_for(duration_s: float, tick_s: float) -> int:
    """The least number of ``tick_s`` ticks lasting at least ``duration_s`` (>= 1 for a
    positive duration). Raises ``LocalProtocolError`` for a non-positive ``tick_s`` or
    a negative duration."""
    if tick_s <= 0 or duration_s < 0:
        raise LocalProtocolError(f"bad tick arithmetic: {duration_s=} {tick_s=}")
    # Round first so 0.3 / 0.1 (= 2.9999999999999996) is 3 ticks, not 4 or 2.
    return math.ceil(round(duration_s / tick_s, 9))


def seconds_for(ticks: int, tick_s: float) -> float:
    """The duration of ``ticks`` ticks."""
    return ticks * tick_s


@dataclass(frozen=True, slots=True)
class TTInterval:
    """``[earliest, latest]``: an interval that contains the true time of a ``now()``."""

    earliest: float
    latest: float

    def __post_init__(self) -> None:
        assert self.earliest <= self.latest, (self.earliest, self.latest)

    @property
    def width(self) -> float:
        """``2 * epsilon`` for an interval from ``IntervalClock.now``."""
        return self.latest - self.earliest

    @property
    def midpoint(self) -> float:
        return (self.earliest + self.latest) / 2

    def contains(self, t: float) -> bool:
        return self.earliest <= t <= self.latest


class IntervalClock:
    """A TrueTime-style clock over ``now_fn`` (see the module docstring).

    The local reading is ``now_fn() + skew_s``; the interval is that reading plus or
    minus ``epsilon_s``. Raises ``LocalProtocolError`` for a negative epsilon.
    """

    def __init__(self, now_fn: NowFn, epsilon_s: float, skew_s: float = 0.0) -> None:
        self._now_fn = now_fn
        self.set_epsilon(epsilon_s)
        self.skew_s = skew_s

    @property
    def epsilon_s(self) -> float:
        return self._epsilon_s

    def set_epsilon(self, epsilon_s: float) -> None:
        if epsilon_s < 0 or math.isnan(epsilon_s):
            raise LocalProtocolError(f"epsilon must be >= 0, got {epsilon_s}")
        self._epsilon_s = epsilon_s

    def set_skew(self, skew_s: float) -> None:
        """Make this node's clock read ``skew_s`` seconds ahead (negative: behind)."""
        self.skew_s = skew_s

    def local(self) -> float:
        """The node's own (possibly skewed) clock reading."""
        return self._now_fn() + self.skew_s

    def now(self) -> TTInterval:
        t = self.local()
        return TTInterval(t - self._epsilon_s, t + self._epsilon_s)

    def after(self, t: float) -> bool:
        """True if ``t`` has definitely passed: ``now().earliest > t``."""
        return self.now().earliest > t

    def before(self, t: float) -> bool:
        """True if ``t`` has definitely not arrived: ``now().latest < t``."""
        return self.now().latest < t

    def wait_s(self, t: float) -> float:
        """How long (by the local clock's rate) until ``after(t)`` holds; 0 if it does.

        Spanner's commit wait: a leader sleeps this long before releasing locks of a
        transaction with commit timestamp ``t``."""
        earliest = self.now().earliest
        return 0.0 if earliest > t else t - earliest + _MIN_STEP_S

    def holds(self) -> bool:
        """Whether the interval guarantee holds now (``abs(skew) <= epsilon``); for
        checkers and tests, which know the true time."""
        return abs(self.skew_s) <= self._epsilon_s


# ``after`` is strict (earliest > t), so waiting exactly ``t - earliest`` leaves it
# false; one microsecond more makes a wait computed from it sufficient.
_MIN_STEP_S = 1e-6
