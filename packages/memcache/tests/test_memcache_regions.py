"""Regions (Scaling Memcache at Facebook §5) and cold-cluster warm-up (§4.3).

* real processes: a master region and a replica region whose database is fed by the
  master's commit log and whose own mcsqueal tails the replica; a write from the replica
  region sets a remote marker, so the writer's next read goes to the master (read your
  writes) until the replica region's daemon has the write and clears the marker; a
  master-region write reaches the replica region's cache as an invalidation;
* in-process: a cold cluster's misses are filled from the warm cluster, and the 2 s
  delete hold-off stops a just-invalidated value from being copied back.
"""

from __future__ import annotations

import os

import pytest
import trio

from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions
from giants.core.transport import tcp
from giants.memcache._simnodes import encode_value
from giants.memcache.client import MemcacheClient
from giants.memcache.dbnode import DbClient
from giants.memcache.lookaside import LookasideClient
from giants.memcache.squeal import POSITION_KEY

DEADLINE_S = 20.0


async def _wait_position(router: str, seq: int) -> None:
    deadline = trio.current_time() + DEADLINE_S
    client = MemcacheClient(router)
    while True:
        raw = await client.get(POSITION_KEY)
        if raw is not None and int(raw) >= seq:
            return
        assert trio.current_time() < deadline, f"daemon behind {router} never reached {seq}"
        await trio.sleep(0.01)


@pytest.mark.real
def test_remote_markers_give_read_your_writes_in_the_replica_region(tmp_path) -> None:
    opts = UpOptions(None, 0, str(tmp_path), extra={"clusters": 1, "servers": 1,
                                                    "replica_region": "true"})
    cluster = LocalCluster("memcache", opts, log=open(os.devnull, "w"))
    with cluster:
        ep = {name: str(c.instance.endpoint) for name, c in cluster.children.items()}

        async def write_while_replica_lags() -> int:
            async with tcp.Client("t-regions-1") as net:
                master, replica = DbClient(net, ep["db"]), DbClient(net, ep["db-replica"])
                remote = LookasideClient(MemcacheClient(ep["r1-router"]), replica,
                                         master=master, markers=True)
                version = await remote.write("u:1", "from-replica-region")
                marker = await MemcacheClient(ep["r1-router"]).get(b"rm:u:1")
                assert marker is not None
                first = await remote.read("u:1")       # the replica has not got it yet
                assert (first.version, first.value, first.source) == (
                    version, "from-replica-region", "master")
                return version

        async def after_replication(version: int) -> None:
            async with tcp.Client("t-regions-2") as net:
                master, replica = DbClient(net, ep["db"]), DbClient(net, ep["db-replica"])
                remote = LookasideClient(MemcacheClient(ep["r1-router"]), replica,
                                         master=master, markers=True)
                local = LookasideClient(MemcacheClient(ep["c1-router"]), master)
                seq = (await master.log_after(0, 512)).entries[-1][0]
                await _wait_position(ep["r1-router"], seq)
                assert await MemcacheClient(ep["r1-router"]).get(b"rm:u:1") is None
                assert await replica.read("u:1") == (version, "from-replica-region")
                # A master-region write invalidates the replica region's cache too.
                await remote.read("u:1")
                assert (await remote.read("u:1")).source == "cache"
                v2 = await local.write("u:1", "from-master-region")
                seq2 = (await master.log_after(0, 512)).entries[-1][0]
                await _wait_position(ep["r1-router"], seq2)
                cached = await MemcacheClient(ep["r1-router"]).get(b"u:1")
                assert cached is None or cached == encode_value(v2, "from-master-region")
                assert (await remote.read("u:1")).value == "from-master-region"

        cluster.kill("db-replica")                 # replication stalls: the replica lags
        version = trio.run(write_while_replica_lags)
        cluster.restart("db-replica")              # it catches up from the master's log
        trio.run(after_replication, version)


class _NoDatabase:
    """A database that must not be asked (the warm cluster answers)."""

    async def read(self, key: str) -> tuple[int, str | None]:
        raise AssertionError(f"database read of {key} during warm-up")


@pytest.fixture
def warm_and_cold(make_server) -> tuple[int, int]:
    """A warm cluster's server and a cold cluster's server (with the 2 s hold-off)."""
    return make_server()[0], make_server(delete_hold_s=2.0)[0]


async def test_cold_cluster_warms_from_the_warm_cluster_with_hold_off(warm_and_cold, clock
                                                                     ) -> None:
    warm_port, cold_port = warm_and_cold
    warm = MemcacheClient(f"127.0.0.1:{warm_port}")
    cold = MemcacheClient(f"127.0.0.1:{cold_port}")
    await warm.set(b"page:1", encode_value(3, "hello"))
    web = LookasideClient(cold, _NoDatabase(), warm=warm)  # type: ignore[arg-type]
    r = await web.read("page:1")
    assert (r.version, r.value, r.source) == (3, "hello", "warm")
    assert (await web.read("page:1")).source == "cache"     # now cached in the cold cluster
    # An invalidation reaches the cold cluster before the warm one: during the hold-off
    # the stale warm value cannot be added back.
    await cold.delete(b"page:1")
    assert not await cold.add(b"page:1", encode_value(3, "hello"))
    assert await cold.get(b"page:1") is None
    clock.advance(2.5)
    assert await cold.add(b"page:1", encode_value(4, "fresh"))
    await warm.aclose()
    await cold.aclose()
