"""Leases (Scaling Memcache at Facebook §3.2.1) against a real server and through the
router, with a standard meta-protocol exchange (``mg ... N`` / ``ms ... C``).

* thundering herd: many clients miss one hot key at once -- exactly one wins the lease
  and fills it, every other one is told to wait and then hits;
* stale set: the paper's race -- a fill computed from a database read that happened
  before a write lands after that write's delete -- reproduced with plain sets (the
  stale value stays), and shown fixed with leases (the fill is refused).
"""

from __future__ import annotations

import trio

from giants.memcache.client import MemcacheClient

CLIENTS = 40




async def test_hot_key_many_misses_exactly_one_fills(target_port: int) -> None:
    addr = f"127.0.0.1:{target_port}"
    clients = [MemcacheClient(addr) for _ in range(CLIENTS)]
    results: list[str] = [""] * CLIENTS
    tokens: dict[int, int] = {}

    async def miss(i: int) -> None:
        r = await clients[i].lease_get(b"hot", 10)
        results[i] = r.status
        if r.status == "won":
            tokens[i] = r.token

    async with trio.open_nursery() as nursery:
        for i in range(CLIENTS):
            nursery.start_soon(miss, i)
    assert results.count("won") == 1, results
    assert results.count("wait") == CLIENTS - 1
    [(winner, token)] = tokens.items()
    assert await clients[winner].lease_set(b"hot", b"from-db", token) == "HD"
    fills = 0
    for i in range(CLIENTS):
        if i == winner:
            continue
        r = await clients[i].lease_get(b"hot", 10)
        assert (r.status, r.value) == ("hit", b"from-db")
        fills += r.status == "won"
    assert fills == 0
    for c in clients:
        await c.aclose()


async def test_stale_set_race_is_fixed_by_leases(target_port: int) -> None:
    addr = f"127.0.0.1:{target_port}"
    database = {"k": "v1"}
    reader, writer = MemcacheClient(addr), MemcacheClient(addr)
    # Reader misses and gets a lease; it reads the database (v1) ...
    lease = await reader.lease_get(b"k", 10)
    assert lease.status == "won"
    read_value = database["k"].encode()
    # ... meanwhile a writer updates the database and deletes the key (the invalidation).
    database["k"] = "v2"
    await writer.delete(b"k")
    # The reader's fill carries a token the delete invalidated: refused.
    assert await reader.lease_set(b"k", read_value, lease.token) == "NF"
    again = await reader.lease_get(b"k", 10)
    assert again.status == "won"
    assert await reader.lease_set(b"k", database["k"].encode(), again.token) == "HD"
    assert await writer.get(b"k") == b"v2"
    await reader.aclose()
    await writer.aclose()


async def test_stale_set_race_without_leases_leaves_stale_data(target_port: int) -> None:
    """The same interleaving with plain get/set: the stale value persists (the bug)."""
    addr = f"127.0.0.1:{target_port}"
    database = {"k": "v1"}
    reader, writer = MemcacheClient(addr), MemcacheClient(addr)
    assert await reader.get(b"k") is None
    read_value = database["k"].encode()
    database["k"] = "v2"
    await writer.delete(b"k")
    assert await reader.set(b"k", read_value)
    assert await writer.get(b"k") == b"v1"        # stale, and nothing will ever fix it
    await reader.aclose()
    await writer.aclose()
