"""``giants demo memcache`` and ``giants sim memcache``.

The demo (Scaling Memcache at Facebook §3.2.1, §3.3, §4) on real processes: start a
region (database, 2 front-end clusters x 3 memcached servers, a Gutter server and a
router per cluster, the invalidation daemon), run web clients against it, SIGKILL one
memcached server mid-run, and report per phase the hit ratio (it dips and recovers as
Gutter fills), client errors (none: the router fails over to Gutter), stale reads after
invalidation (none), read latency and the invalidation staleness window; then the
thundering-herd experiment with and without leases, and the lease/invalidation
simulation across seeds with and without leases. Exit 0 only if every verdict passed.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import trio

from giants.core.plugins import UpOptions
from giants.core.trace import TraceWriter

__all__ = ["run_demo", "run_sim_command", "run_region_scenario"]

WARM_S = 3.0
AFTER_KILL_S = 5.0
VICTIM = "c1-mc0"
SIM_SEEDS = 10


def _say(text: str) -> None:
    print(f"  {text}", flush=True)


def run_region_scenario(data_dir: str, *, warm_s: float = WARM_S,
                        after_kill_s: float = AFTER_KILL_S, clients_per_cluster: int = 3,
                        trace: TraceWriter | None = None, verbose: bool = True) -> dict[str, Any]:
    """Start a region, run the workload, kill ``VICTIM`` at ``warm_s``; the measurements."""
    from giants.core.launcher import LocalCluster
    from giants.core.transport import tcp
    from giants.memcache.dbnode import DbClient
    from giants.memcache.workload import RegionWorkload

    say = _say if verbose else (lambda text: None)
    cluster = LocalCluster("memcache", UpOptions(None, 0, data_dir), log=open(os.devnull, "w"))
    with cluster:
        eps = cluster.endpoints
        routers = {name.split("-")[0]: str(child.instance.endpoint)
                   for name, child in cluster.children.items() if child.instance.role == "router"}
        db = eps["db"][0]
        say(f"started {len(cluster.pids)} processes: db {db}, routers {routers}, "
            f"servers {len(eps['server'])}, gutter {len(eps['gutter'])}, squeal 1")
        work = RegionWorkload(routers, db, clients_per_cluster=clients_per_cluster)
        killed_at: list[float] = []

        async def kill() -> None:
            cluster.kill(VICTIM)
            killed_at.append(work.now())
            say(f"t={work.now():.1f}s SIGKILL {VICTIM} (one third of cluster c1's keys)")
            if trace is not None:
                trace.event(work.now(), VICTIM, "fault", what="kill")

        async def main() -> None:
            await work.run(warm_s + after_kill_s, [(warm_s, kill)])
            async with tcp.Client("demo-log") as net:
                await work.log_order(DbClient(net, db))

        trio.run(main)
    k = killed_at[0] if killed_at else warm_s
    end = warm_s + after_kill_s
    rep = work.report()
    if trace is not None:
        for r in work.reads:
            trace.event(r.start, "web", "op", what="read", key=r.key, version=r.version,
                        source=r.source)
        for t, key, version in work.commits:
            trace.event(t, "web", "op", what="write", key=key, version=version)
    return {
        "before": work.hit_ratio(1.0, k), "just_after": work.hit_ratio(k, k + 1.0),
        "recovered": work.hit_ratio(end - 2.0, end), "report": rep, "killed_at": k,
    }


def run_demo(args: Any) -> int:
    from giants.memcache.simulation import run_memcache_sim

    print("== giants demo memcache: a region under load, a memcached server killed ==",
          flush=True)
    t0 = time.monotonic()
    base = getattr(args, "data_dir", None) or tempfile.mkdtemp(prefix="giants-demo-memcache-")
    trace_dir = getattr(args, "trace_dir", None) or ".giants/traces"
    os.makedirs(trace_dir, exist_ok=True)
    trace_path = os.path.join(trace_dir, "demo-memcache-real.trace.jsonl")
    with open(trace_path, "w", encoding="utf-8") as f:
        res = run_region_scenario(os.path.join(base, "memcache"), trace=TraceWriter(f))
    rep = res["report"]
    _say(f"{rep.reads} reads, {rep.writes} writes by {2 * 3} web clients")
    _say(f"hit ratio: before the kill {res['before']:.1%}, first second after "
         f"{res['just_after']:.1%}, last 2 s {res['recovered']:.1%} (Gutter took the keys)")
    _say(f"read latency: p50 {rep.pct(rep.read_latency_ms, 0.5):.2f} ms, "
         f"p99 {rep.pct(rep.read_latency_ms, 0.99):.2f} ms")
    _say(f"invalidation staleness window (commit -> daemon done): {rep.staleness_summary()}")
    _say(f"reads older than the newest commit at their start (the eventual-consistency "
         f"window): {rep.stale_reads_any}")
    _say(f"stale reads after the daemon processed the write: {len(rep.stale_after_invalidation)}")
    _say(f"client-visible errors: {len(rep.errors)}")
    for line in (rep.errors + rep.stale_after_invalidation)[:5]:
        _say(f"  ! {line}")
    real_ok = (not rep.errors and not rep.stale_after_invalidation
               and res["recovered"] >= 0.85 * res["before"] and rep.reads > 0)
    _say(f"verdict (no client error, no stale read after invalidation, hit ratio recovered "
         f"to >= 85% of before): {'PASS' if real_ok else 'FAIL'}")
    _say(f"trace: {trace_path}")
    print(f"-- the stale-set race in the simulator (leases vs plain sets), {SIM_SEEDS} seeds --",
          flush=True)
    with_bad = sum(not run_memcache_sim(s, ops=250).ok for s in range(SIM_SEEDS))
    without_bad = sum(not run_memcache_sim(s, ops=250, use_leases=False).ok
                      for s in range(SIM_SEEDS))
    _say(f"without leases: a stale value persisted after invalidation in {without_bad}/"
         f"{SIM_SEEDS} seeds")
    _say(f"with leases:    a stale value persisted after invalidation in {with_bad}/"
         f"{SIM_SEEDS} seeds")
    sim_ok = with_bad == 0
    ok = real_ok and sim_ok
    print(f"== memcache: {'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.1f}s ==",
          flush=True)
    return 0 if ok else 1


def run_sim_command(args: Any) -> int:
    from giants.memcache.simulation import run_memcache_sim

    seed = int(getattr(args, "seed", 0) or 0)
    nemesis = getattr(args, "nemesis", None) or "loss,duplicate,reorder,crash"
    ops = int(getattr(args, "ops", 400) or 400)
    trace_dir = getattr(args, "trace_dir", None) or ".giants/traces"
    os.makedirs(trace_dir, exist_ok=True)
    path = os.path.join(trace_dir, f"memcache-seed{seed}.trace.jsonl")
    trace = TraceWriter()
    try:
        res = run_memcache_sim(seed, ops=ops, nemesis=nemesis, trace=trace)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    trace.save(path)
    verdict = "PASS" if res.ok else "FAIL"
    print(f"{verdict}  memcache seed={seed} nemesis={nemesis}: {res.reads} reads "
          f"(hit ratio {res.hit_ratio():.1%}), {res.fills_rejected} stale fills rejected by "
          f"leases, {res.waits} lease waits; invalidation {res.staleness_summary()}")
    for line in (res.violations + res.final_mismatches)[:10]:
        print(f"  ! {line}")
    print(f"trace: {path}   (render: giants trace {path})")
    return 0 if res.ok else 1
