"""Seed plumbing for pytest: run simulation sweeps over many seeds, replay one exactly.

DESIGN.md "Tests and CI": simulation tests run a fixed set of seeds in CI, more on
demand, and a failing seed is printed so that ``--giants-seed N`` replays it exactly.
This plugin is registered through the ``pytest11`` entry point of giants-core, so every
test run loads it; it therefore imports nothing beyond pytest and the standard library.

Two ways to write a sweep::

    def test_election(giants_seeds):
        for seed in giants_seeds(50):        # 50 seeds by default
            run_simulation(seed)

    @pytest.mark.seeds(50)                   # one test item per seed: test_x[seed=7]
    def test_election_param(seed):
        run_simulation(seed)

How many seeds run (first rule that applies):

1. ``--giants-seed N``  -- only seed ``N`` (replay a failure);
2. ``--seeds K``        -- ``K`` seeds for every sweep;
3. ``GIANTS_SEEDS=K``   -- ``K`` seeds for every sweep; ``GIANTS_SEEDS=x10`` multiplies each
   sweep's own default by 10 (what ``nox -s sim`` uses for long sweeps);
4. the sweep's default (``giants_seeds(50)``, ``@pytest.mark.seeds(50)``).

Seeds are ``0 .. count-1`` (plus ``start=`` if the test asks for a different range).
A test asking for the ``seed`` fixture without the marker gets seed 0, or the replayed
one. When a test fails, its report carries a section
``giants seed: N (replay with --giants-seed N)`` naming the seed that was running: the
test function's local variable ``seed`` at the failure (so ``for seed in
list(giants_seeds(50))`` works too), else the seed the sweep last handed out, else the
marker's parameter; if the sweep had already ended, the section gives its range.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import pytest

__all__ = ["SEEDS_ENV", "SeedPolicy", "SeedSweep", "parse_seeds_env"]

SEEDS_ENV = "GIANTS_SEEDS"
# A sweep larger than this is almost certainly a typo (GIANTS_SEEDS=x100000); refuse it.
MAX_SEEDS = 1_000_000

_current_seed = pytest.StashKey[int]()
_finished_sweep = pytest.StashKey[list[int]]()   # seeds of a sweep iterated to its end
_policy_key = pytest.StashKey["SeedPolicy"]()


@dataclass(frozen=True)
class SeedPolicy:
    """How many seeds a sweep runs, from the command line and the environment."""

    replay: int | None = None   # --giants-seed
    count: int | None = None    # --seeds, or GIANTS_SEEDS=K
    factor: int = 1             # GIANTS_SEEDS=xF

    def seeds(self, default: int, start: int = 0) -> list[int]:
        """The seeds a sweep with this ``default`` count runs."""
        if default < 1:
            raise ValueError(f"a seed sweep needs a default of at least 1, got {default}")
        if self.replay is not None:
            return [self.replay]
        count = self.count if self.count is not None else default * self.factor
        return list(range(start, start + min(count, MAX_SEEDS)))


def parse_seeds_env(text: str | None) -> tuple[int | None, int]:
    """Parse ``GIANTS_SEEDS``: ``"500"`` -> (500, 1); ``"x10"`` / ``"10x"`` -> (None, 10).

    Raises ``ValueError`` on anything else.
    """
    if text is None or not text.strip():
        return None, 1
    t = text.strip().lower()
    if t.startswith("x") or t.endswith("x"):
        factor = int(t.strip("x"))
        if factor < 1:
            raise ValueError(f"{SEEDS_ENV} factor must be >= 1, got {text!r}")
        return None, factor
    count = int(t)
    if count < 1:
        raise ValueError(f"{SEEDS_ENV} must be >= 1, got {text!r}")
    return count, 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("giants", "giants simulation seeds")
    group.addoption(
        "--giants-seed", type=int, default=None, metavar="N",
        help="replay exactly one seed in every seed sweep",
    )
    group.addoption(
        "--seeds", type=_positive_int, default=None, metavar="K",
        help=f"run K seeds in every seed sweep (overrides ${SEEDS_ENV})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "seeds(n, arg='seed'): run the test once per seed (n by default); the seed is "
        "passed as the argument `arg`",
    )
    try:
        env_count, factor = parse_seeds_env(os.environ.get(SEEDS_ENV))
    except ValueError as exc:
        raise pytest.UsageError(f"bad {SEEDS_ENV}: {exc}") from None
    cli_count = config.getoption("--seeds", default=None)
    config.stash[_policy_key] = SeedPolicy(
        replay=config.getoption("--giants-seed", default=None),
        count=cli_count if cli_count is not None else env_count,
        factor=factor,
    )


def _policy(config: pytest.Config) -> SeedPolicy:
    return config.stash.get(_policy_key, SeedPolicy())


def pytest_report_header(config: pytest.Config) -> str | None:
    p = _policy(config)
    if p.replay is not None:
        return f"giants: replaying seed {p.replay}"
    if p.count is not None:
        return f"giants: {p.count} seeds per sweep"
    if p.factor != 1:
        return f"giants: seed sweeps x{p.factor}"
    return None


def _marker_args(marker: pytest.Mark) -> tuple[int, str, int]:
    default = marker.args[0] if marker.args else marker.kwargs.get("n", 1)
    arg = marker.kwargs.get("arg", "seed")
    start = marker.kwargs.get("start", 0)
    if not isinstance(default, int) or not isinstance(arg, str) or not isinstance(start, int):
        raise pytest.UsageError(f"bad seeds marker {marker!r}: use @pytest.mark.seeds(50)")
    return default, arg, start


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("seeds")
    if marker is None:
        return
    default, arg, start = _marker_args(marker)
    if arg not in metafunc.fixturenames:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: @pytest.mark.seeds needs an argument named {arg!r}"
        )
    seeds = _policy(metafunc.config).seeds(default, start)
    metafunc.parametrize(arg, seeds, ids=[f"{arg}={s}" for s in seeds])


class SeedSweep:
    """The callable behind the ``giants_seeds`` fixture; remembers the running seed."""

    def __init__(self, policy: SeedPolicy, item: pytest.Item) -> None:
        self._policy = policy
        self._item = item

    def __call__(self, default: int, start: int = 0) -> Iterator[int]:
        seeds = self._policy.seeds(default, start)
        if _finished_sweep in self._item.stash:
            del self._item.stash[_finished_sweep]
        for seed in seeds:
            self._item.stash[_current_seed] = seed
            yield seed
        self._item.stash[_finished_sweep] = seeds


@pytest.fixture
def giants_seeds(request: pytest.FixtureRequest) -> Callable[..., Iterator[int]]:
    """``giants_seeds(default, start=0)`` iterates the seeds of one sweep."""
    return SeedSweep(_policy(request.config), request.node)


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """One seed for a test without the ``seeds`` marker: the replayed one, else 0."""
    value = _policy(request.config).seeds(1)[0]
    request.node.stash[_current_seed] = value
    return value


def _seed_of(item: pytest.Item, call: pytest.CallInfo[None]) -> int | list[int] | None:
    """The seed that was running when ``item`` failed (a list: somewhere in that sweep).

    In order: the test function's own local ``seed`` at the failure (right even when the
    test iterated ``list(giants_seeds(n))``), the seed the sweep last handed out unless
    the sweep had already finished, the ``seeds`` marker's parameter.
    """
    local = _local_seed(item, call)
    if local is not None:
        return local
    if _finished_sweep in item.stash:
        return item.stash[_finished_sweep]
    if _current_seed in item.stash:
        return item.stash[_current_seed]
    marker = item.get_closest_marker("seeds")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None:
        return None
    _, arg, _ = _marker_args(marker)
    value = callspec.params.get(arg)
    return value if isinstance(value, int) else None


def _local_seed(item: pytest.Item, call: pytest.CallInfo[None]) -> int | None:
    code = getattr(getattr(item, "obj", None), "__code__", None)
    tb = call.excinfo.tb if call.excinfo is not None else None
    while tb is not None:
        if tb.tb_frame.f_code is code:
            value = tb.tb_frame.f_locals.get("seed")
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        tb = tb.tb_next
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        found = _seed_of(item, call)
        if isinstance(found, int):
            text = f"giants seed: {found} (replay with --giants-seed {found})"
            report.sections.append(("giants seed", text))
        elif found:
            text = (f"giants seeds: {found[0]}..{found[-1]} (the failure came after the "
                    "sweep; replay one with --giants-seed N)")
            report.sections.append(("giants seed", text))
    return report
