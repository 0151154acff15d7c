"""The seed plumbing pytest plugin: sweep sizes, replay, and the seed printed on failure."""

from __future__ import annotations

import pytest

from giants.core.testing.pytest_plugin import SeedPolicy, parse_seeds_env

pytest_plugins = ["pytester"]

SWEEPS = """
import pytest

def test_loop(giants_seeds):
    for seed in giants_seeds(5):
        assert seed != 3

@pytest.mark.seeds(4)
def test_param(seed):
    assert seed != 2

def test_plain(seed):
    assert seed == 0

def test_materialized(giants_seeds):
    seeds = list(giants_seeds(6))
    for seed in seeds:
        assert seed != 4

def test_after_the_sweep(giants_seeds):
    total = sum(giants_seeds(3))
    assert total == -1
"""


def test_policy_and_env_parsing() -> None:
    assert SeedPolicy().seeds(3) == [0, 1, 2]
    assert SeedPolicy().seeds(2, start=10) == [10, 11]
    assert SeedPolicy(replay=7, count=100).seeds(50) == [7]
    assert SeedPolicy(count=4).seeds(50) == [0, 1, 2, 3]
    assert SeedPolicy(factor=3).seeds(2) == list(range(6))
    with pytest.raises(ValueError):
        SeedPolicy().seeds(0)
    assert parse_seeds_env(None) == (None, 1)
    assert parse_seeds_env(" ") == (None, 1)
    assert parse_seeds_env("500") == (500, 1)
    assert parse_seeds_env("x10") == (None, 10)
    assert parse_seeds_env("4X") == (None, 4)
    for bad in ("0", "x0", "lots", "-3"):
        with pytest.raises(ValueError):
            parse_seeds_env(bad)


def test_failing_seed_is_reported_with_the_replay_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SWEEPS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=4)
    result.stdout.fnmatch_lines([
        "*giants seed: 3 (replay with --giants-seed 3)*",
        "*giants seed: 2 (replay with --giants-seed 2)*",
        "*giants seed: 4 (replay with --giants-seed 4)*",
        "*giants seeds: 0..2 (the failure came after the sweep*",
    ])
    assert "test_param[seed=2]" in result.stdout.str()


def test_replay_runs_one_seed_everywhere(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SWEEPS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--giants-seed", "3", "-v")
    # loop hits 3, plain gets 3, after-the-sweep always fails; param and materialized pass
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines(["*replaying seed 3*", "*test_param?seed=3? PASSED*"])


def test_seeds_option_and_environment_scale_sweeps(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(SWEEPS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--seeds", "2")
    result.assert_outcomes(passed=5, failed=1)   # only after-the-sweep fails
    monkeypatch.setenv("GIANTS_SEEDS", "x2")
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q")
    assert result.stdout.str().count("test_param[") == 8
    monkeypatch.setenv("GIANTS_SEEDS", "3")
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q")
    assert result.stdout.str().count("test_param[") == 3
    monkeypatch.setenv("GIANTS_SEEDS", "many")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*bad GIANTS_SEEDS*"])


def test_marker_without_a_seed_argument_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.seeds(3)
        def test_forgot():
            pass
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*needs an argument named 'seed'*"])
