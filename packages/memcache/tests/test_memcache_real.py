"""Real processes (``giants up memcache``'s plan): kill a server, invalidate, herd, restart.

Scaling Memcache at Facebook §3.3 (Gutter: a dead server's keys go to Gutter, the hit
ratio recovers, no client sees an error), §4.1 (after a database write commits, no
cluster serves the old value once mcsqueal has processed it; the staleness window is
measured), §3.2.1 (thundering herd: with leases one database read per hot-key miss).
"""

from __future__ import annotations

import os
import time

import pytest
import trio

from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions
from giants.core.transport import tcp
from giants.memcache.client import MemcacheClient
from giants.memcache.dbnode import DbClient
from giants.memcache.demo import run_region_scenario
from giants.memcache.lookaside import LookasideClient
from giants.memcache.squeal import POSITION_KEY
from giants.memcache.workload import herd_experiment

pytestmark = pytest.mark.real
DEADLINE_S = 20.0


def test_kill_a_server_gutter_takes_over_no_client_error(tmp_path) -> None:
    res = run_region_scenario(str(tmp_path), warm_s=2.5, after_kill_s=4.5,
                              clients_per_cluster=2, verbose=False)
    rep = res["report"]
    print(f"hit ratio before {res['before']:.1%}, right after the kill {res['just_after']:.1%},"
          f" recovered {res['recovered']:.1%}; staleness {rep.staleness_summary()}")
    assert rep.reads > 100 and rep.writes > 0
    assert rep.errors == []
    assert rep.stale_after_invalidation == []
    assert res["recovered"] >= 0.85 * res["before"]
    assert rep.staleness_ms


async def _position(router: str) -> int:
    raw = await MemcacheClient(router).get(POSITION_KEY)
    return int(raw) if raw is not None else 0


def test_invalidation_reaches_every_cluster_and_herd_and_restart(tmp_path) -> None:
    cluster = LocalCluster("memcache", UpOptions(None, 0, str(tmp_path)),
                           log=open(os.devnull, "w"))
    with cluster:
        routers = [str(c.instance.endpoint) for c in cluster.children.values()
                   if c.instance.role == "router"]
        db = cluster.endpoints["db"][0]

        async def invalidation() -> float:
            async with tcp.Client("t-inval") as net:
                webs = [LookasideClient(MemcacheClient(r), DbClient(net, db)) for r in routers]
                deadline = trio.current_time() + DEADLINE_S
                first = await DbClient(net, db).write("profile:1", "v1")
                while min([await _position(r) for r in routers]) < first.seq:
                    assert trio.current_time() < deadline, "daemon never processed v1"
                    await trio.sleep(0.005)
                assert [(await w.read("profile:1")).version for w in webs] == [1, 1]
                assert [(await w.read("profile:1")).source for w in webs] == ["cache"] * 2
                t0 = time.monotonic()
                written = await DbClient(net, db).write("profile:1", "v2")   # commit only
                while min([await _position(r) for r in routers]) < written.seq:
                    assert trio.current_time() < deadline, "daemon never processed the write"
                    await trio.sleep(0.005)
                window = time.monotonic() - t0
                for r in routers:                   # no cluster serves v1 any more
                    cached = await MemcacheClient(r).get(b"profile:1")
                    assert cached is None or cached.startswith(b"2:")
                for w in webs:
                    assert (await w.read("profile:1")).value == "v2"
                return window

        window = trio.run(invalidation)
        print(f"staleness window (commit -> every cluster invalidated): {1000 * window:.1f} ms")

        with_leases = trio.run(lambda: herd_experiment(routers[0], db, clients=20,
                                                       use_leases=True, key="herd:a"))
        without = trio.run(lambda: herd_experiment(routers[0], db, clients=20,
                                                   use_leases=False, key="herd:b"))
        print(f"herd of 20: database reads with leases {with_leases[0]}, without {without[0]}")
        assert with_leases == (1, 1)
        assert without[0] > 1

        cluster.kill("db")                          # the database of record survives
        cluster.restart("db")

        async def after_restart() -> None:
            async with tcp.Client("t-restart") as net:
                deadline = trio.current_time() + DEADLINE_S
                while True:
                    try:
                        assert await DbClient(net, db).read("profile:1") == (2, "v2")
                        return
                    except AssertionError:
                        raise
                    except Exception:
                        assert trio.current_time() < deadline
                        await trio.sleep(0.05)

        trio.run(after_restart)
