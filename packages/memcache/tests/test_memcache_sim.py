"""Leases and invalidation in the deterministic simulator, across seeds.

Scaling Memcache at Facebook §3.2.1 + §4.1 + §5: web servers in three front-end clusters
(two regions) on a few hot keys, the master database and its replica, one mcsqueal per
region, a nemesis losing, duplicating and reordering messages and crashing cache nodes
and daemons. The checker runs after every event: once a daemon has processed a log
entry, no cache node of its region holds an older version of that key; at the end every
cached value equals the database's.
"""

from __future__ import annotations

import pytest

from giants.core.trace import TraceWriter
from giants.memcache.simulation import run_memcache_sim

OPS = 150


@pytest.mark.sim
def test_no_stale_value_persists_after_invalidation_with_leases(giants_seeds) -> None:
    rejected = 0
    ratios = []
    for seed in giants_seeds(50):
        res = run_memcache_sim(seed, ops=OPS)
        assert res.ok, (f"seed {seed}: {res.violations[:3]} {res.final_mismatches[:3]}")
        assert res.reads > 0 and res.staleness_ms
        rejected += res.fills_rejected
        ratios.append(res.hit_ratio())
    assert rejected > 0          # the race really happened, and leases refused the fills
    assert sum(ratios) / len(ratios) > 0.3


def test_without_leases_the_stale_set_race_happens() -> None:
    """The paper's race, reproduced: plain sets let a stale fill land after the delete."""
    for seed in range(30):
        res = run_memcache_sim(seed, ops=OPS, use_leases=False)
        if not res.ok:
            break
    else:
        pytest.fail("no seed in 0..29 reproduced the stale-set race without leases")
    assert res.violations or res.final_mismatches
    assert res.fills_rejected == 0               # nothing refused the stale fill


def test_same_seed_same_trace() -> None:
    a, b = TraceWriter(), TraceWriter()
    run_memcache_sim(7, ops=80, trace=a)
    run_memcache_sim(7, ops=80, trace=b)
    assert a.text() == b.text() and a.lines


def test_staleness_window_is_measured_and_reported(capsys) -> None:
    res = run_memcache_sim(3, ops=OPS, nemesis="none")
    assert res.ok and res.staleness_ms
    assert max(res.staleness_ms) < 1000.0          # no faults: well under a second
    print(f"simulated invalidation staleness window: {res.staleness_summary()}")
