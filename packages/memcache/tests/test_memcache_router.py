"""The router (mcrouter's role, Scaling Memcache at Facebook §3.1-§3.3) in-process:
sharding, parallel multi-gets, replicated pools, and failover to Gutter."""

from __future__ import annotations

from functools import partial

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError

from giants.memcache._routing import GUTTER_TTL_S, RouteTable
from giants.memcache.router import Router, serve_router


def client(port: int) -> Client:
    return Client(("127.0.0.1", port), connect_timeout=5, timeout=5, default_noreply=False)


def test_keys_are_sharded_and_multiget_is_split_per_server(region) -> None:
    c = client(region["router_port"])
    keys = [f"k{i}".encode() for i in range(100)]
    for k in keys:
        c.set(k, k + b"-v")
    stores = [region["servers"][n][1].store for n in ("mc0", "mc1")]
    assert all(len(s) > 20 for s in stores)                 # both shards hold keys
    assert sum(len(s) for s in stores) == 100               # each key on exactly one
    before = region["router"].stats.multiget_batches
    got = c.get_many(keys)
    assert got == {k: k + b"-v" for k in keys}
    assert region["router"].stats.multiget_batches - before == 2   # one batch per server


def test_dead_server_fails_over_to_gutter_without_client_errors(region, clock) -> None:
    c = client(region["router_port"])
    keys = [f"user:{i}".encode() for i in range(200)]
    for k in keys:
        c.set(k, b"v")
    mc0_store = region["servers"]["mc0"][1].store
    on_dead = {k for k in keys if mc0_store.peek(k, clock()) is not None}
    assert on_dead
    region["servers"]["mc0"][2]()                           # stop mc0
    hits = sum(c.get(k) is not None for k in keys)          # no exception reaches us
    assert hits == len(keys) - len(on_dead)                 # its keys miss (in Gutter)...
    for k in keys:
        if c.get(k) is None:
            c.set(k, b"v", expire=3600)                     # ... look-aside refill ...
    assert all(c.get(k) == b"v" for k in keys)              # ... and the hit ratio recovers
    gutter = region["servers"]["gutter"][1].store
    assert {k for k in keys if gutter.peek(k, clock()) is not None} == on_dead
    assert all(gutter.peek(k, clock()).exptime <= clock() + GUTTER_TTL_S for k in on_dead)
    victim = sorted(on_dead)[0]
    assert c.delete(victim)                                 # deletes reach Gutter too
    assert gutter.peek(victim, clock()) is None
    assert region["router"].stats.failovers > 0
    assert region["router"].stats.unavailable == 0


def test_replicated_pool_writes_and_deletes_everywhere(trio_thread, clock, make_server) -> None:
    replicas = [make_server() for _ in range(3)]
    shard = make_server()
    addrs = [f"127.0.0.1:{p}" for p, _, _ in replicas]
    router = Router(RouteTable([f"127.0.0.1:{shard[0]}"], [], {"hot:": addrs}))
    port, _ = trio_thread.start(partial(serve_router, router))
    c = client(port)
    c.set(b"hot:feed", b"x")
    assert all(s.store.peek(b"hot:feed", clock()) is not None for _, s, _ in replicas)
    for _ in range(9):
        assert c.get(b"hot:feed") == b"x"
    reads = [s.store.stats.get_hits for _, s, _ in replicas]
    assert all(r >= 2 for r in reads), reads                # reads spread over replicas
    assert c.delete(b"hot:feed")
    assert all(s.store.peek(b"hot:feed", clock()) is None for _, s, _ in replicas)
    c.set(b"plain", b"y")
    assert shard[1].store.peek(b"plain", clock()) is not None


def test_router_without_gutter_reports_unavailable(trio_thread, make_server) -> None:
    port0, _, stop0 = make_server()
    router = Router(RouteTable([f"127.0.0.1:{port0}"]))
    port, _ = trio_thread.start(partial(serve_router, router))
    c = client(port)
    c.set(b"a", b"1")
    stop0()
    with pytest.raises(MemcacheServerError, match="backend unavailable"):
        c.get(b"a")
    assert c.raw_command(b"version", b"\r\n").startswith(b"VERSION")   # router still fine
