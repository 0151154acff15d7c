"""Paper-claim tests on the pure pieces: parser, store (slabs, LRU, expiry, leases),
consistent hashing, routing decisions and mcsqueal's rounds."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giants.memcache._hashring import HashRing
from giants.memcache._protocol import RequestParser
from giants.memcache._replies import BLOCKS, META, reply_length, split_values
from giants.memcache._routing import Health, RouteTable, cap_ttl, quiet_reply, strip_quiet
from giants.memcache._session import Server, Session
from giants.memcache._squeal import SquealCore
from giants.memcache._store import ItemTooLarge, NonNumeric, Store, exptime_to_abs

NOW = 1_800_000_000.0


def parse_all(chunks: list[bytes]) -> list[tuple[bytes, list[bytes], bytes | None, bytes | None]]:
    p = RequestParser()
    out = []
    for c in chunks:
        p.feed(c)
        while (r := p.next()) is not None:
            out.append((r.name, r.args, r.data, r.error))
    return out


STREAM = (b"set a 0 0 3\r\nabc\r\nget a b\r\nms k 2 T5\r\nhi\r\ncas a 1 2 3 4 noreply\r\nxyz\r\n"
          b"set x 0 0 2\r\nabcd\r\nbogus\r\nmg a v c\r\n")


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
@settings(max_examples=200, deadline=None)
def test_parser_is_independent_of_chunking(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert parse_all(chunks) == parse_all([STREAM])


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_session_never_raises_on_garbage(data: bytes) -> None:
    s = Session(Server(Store(4 * 1024 * 1024)))
    out = s.feed(data, NOW)
    for line in out.split(b"\r\n"):
        assert not line.startswith(b"Traceback")
    assert s.feed(b"\r\nversion\r\n", NOW).endswith(b"VERSION 1.6.18\r\n") or s.closed


def test_exptime_rule() -> None:
    assert exptime_to_abs(0, NOW) == 0.0
    assert exptime_to_abs(10, NOW) == NOW + 10
    assert exptime_to_abs(-1, NOW) < NOW
    assert exptime_to_abs(int(NOW) + 50, NOW) == int(NOW) + 50
    assert exptime_to_abs(60 * 60 * 24 * 30 + 1, NOW) < NOW     # absolute, long past


def test_lru_evicts_the_least_recently_used_within_a_slab_class() -> None:
    store = Store(2 * 1024 * 1024)                  # two 1 MB pages
    value = b"v" * 500
    t = NOW
    for i in range(5000):
        t += 100                                    # past the 60 s bump interval
        store.link(f"k{i}".encode(), value, 0, 0.0, t)
        if i >= 10:
            assert store.get(b"k0", t) is not None  # k0 kept hot: never evicted
    assert store.stats.evictions > 0
    assert store.get(b"k1", t) is None              # cold early keys went first
    assert store.get(b"k4999", t) is not None
    assert store.bytes_used <= 2 * 1024 * 1024


def test_slab_rebalancing_moves_a_page_to_the_class_that_needs_it() -> None:
    store = Store(2 * 1024 * 1024)
    t = NOW
    for i in range(12000):                          # fill both pages with small items
        store.link(f"s{i}".encode(), b"x" * 100, 0, 0.0, t)
    t += 10_000                                     # the small items age
    big = b"y" * 200_000
    for i in range(3):
        store.link(f"b{i}".encode(), big, 0, 0.0, t)
        t += 1
    assert store.get(b"b2", t) is not None
    assert store.stats.slabs_moved >= 1


def test_item_size_limit_and_non_numeric() -> None:
    store = Store()
    with pytest.raises(ItemTooLarge):
        store.link(b"k", b"x" * (1024 * 1024), 0, 0.0, NOW)
    store.link(b"t", b"text", 0, 0.0, NOW)
    with pytest.raises(NonNumeric):
        store.arith(b"t", True, 1, NOW)


def test_lease_tokens_one_winner_and_delete_invalidates() -> None:
    """§3.2.1: one token per key; a delete makes the outstanding token useless."""
    s = Session(Server(Store()))
    first = s.feed(b"mg k v c N10\r\n", NOW)
    assert first.startswith(b"VA 0 c") and first.split(b"\r\n")[0].endswith(b" W")
    token = int(first.split()[2][1:])
    assert s.feed(b"mg k v c N10\r\n", NOW).split(b"\r\n")[0].endswith(b" Z")   # wait
    assert s.feed(b"get k\r\n", NOW) == b"END\r\n"          # a placeholder is no value
    assert s.feed(b"delete k\r\n", NOW) == b"DELETED\r\n"
    assert s.feed(b"ms k 3 C%d\r\nold\r\n" % token, NOW) == b"NF\r\n"   # stale set refused
    second = s.feed(b"mg k v c N10\r\n", NOW)
    token2 = int(second.split()[2][1:])
    assert token2 != token
    assert s.feed(b"ms k 3 C%d\r\nnew\r\n" % token2, NOW) == b"HD\r\n"
    assert s.feed(b"mg k v\r\n", NOW) == b"VA 3\r\nnew\r\n"
    assert s.feed(b"ms k 3 C%d\r\nbad\r\n" % token2, NOW) == b"EX\r\n"  # token used up


def test_lease_expires_after_its_ttl() -> None:
    s = Session(Server(Store()))
    s.feed(b"mg k v c N10\r\n", NOW)
    assert s.feed(b"mg k v c N10\r\n", NOW + 9).split(b"\r\n")[0].endswith(b"Z")
    assert s.feed(b"mg k v c N10\r\n", NOW + 11).split(b"\r\n")[0].endswith(b"W")


def test_stale_values_after_invalidate() -> None:
    """md I keeps the value marked stale (X); the next reader wins the refill."""
    s = Session(Server(Store()))
    s.feed(b"set k 0 0 3\r\nold\r\n", NOW)
    assert s.feed(b"md k I T30\r\n", NOW) == b"HD\r\n"
    assert s.feed(b"mg k v c\r\n", NOW).startswith(b"VA 3 c")
    assert b" Z X" in s.feed(b"mg k v c\r\n", NOW)
    assert s.feed(b"get k\r\n", NOW) == b"END\r\n"


def test_meta_arithmetic_and_modes() -> None:
    s = Session(Server(Store()))
    assert s.feed(b"ma cnt\r\n", NOW) == b"NF\r\n"
    assert s.feed(b"ma cnt N0 J5 v\r\n", NOW) == b"VA 1\r\n5\r\n"
    assert s.feed(b"ma cnt v D3 MD\r\n", NOW) == b"VA 1\r\n2\r\n"
    assert s.feed(b"ms k2 3 F5 MS\r\nabc\r\n", NOW) == b"HD\r\n"
    assert s.feed(b"ms k2 3 ME\r\nabc\r\n", NOW) == b"NS\r\n"
    assert s.feed(b"ms k2 3 MA\r\nxyz\r\n", NOW) == b"HD\r\n"
    assert s.feed(b"mg k2 v f k O7 s t\r\n", NOW) == b"VA 6 f5 kk2 O7 s6 t-1\r\nabcxyz\r\n"
    assert s.feed(b"mg nope v q\r\nmn\r\n", NOW) == b"MN\r\n"
    assert s.feed(b"md nope q\r\n", NOW) == b"NF\r\n"
    assert s.feed(b"me k2\r\n", NOW).startswith(b"ME k2 exp=-1 ")


def test_delete_hold_off_refuses_add() -> None:
    """§4.3 cold-cluster warm-up: after a delete, add is refused for the hold-off."""
    store = Store(delete_hold_s=2.0)
    store.link(b"k", b"v", 0, 0.0, NOW)
    store.delete(b"k", NOW)
    assert store.store(b"add", b"k", b"stale", 0, 0, NOW + 1) == b"NOT_STORED"
    assert store.store(b"add", b"k", b"fresh", 0, 0, NOW + 3) == b"STORED"


def test_reply_framing() -> None:
    reply = b"VALUE a 0 3\r\nEND\r\nVALUE b 5 2 9\r\nhi\r\nEND\r\n"
    assert reply_length(reply, BLOCKS) == len(reply)
    assert reply_length(reply[:-1], BLOCKS) == -1
    assert split_values(reply) == {b"a": b"VALUE a 0 3\r\nEND\r\n",
                                   b"b": b"VALUE b 5 2 9\r\nhi\r\n"}
    assert reply_length(b"VA 2 c1\r\nhi\r\nHD\r\n", META) == len(b"VA 2 c1\r\nhi\r\n")


def test_consistent_hashing_spreads_and_moves_little() -> None:
    servers = [f"10.0.0.{i}:11211" for i in range(5)]
    ring = HashRing(servers)
    keys = [f"user:{i}".encode() for i in range(5000)]
    owners = {k: ring.lookup(k) for k in keys}
    counts = Counter(owners.values())
    assert min(counts.values()) > 0.5 * (5000 / 5)
    smaller = HashRing(servers[:4])
    moved = sum(owners[k] != smaller.lookup(k) for k in keys)
    assert moved == counts[servers[4]]             # only the removed server's keys move


def test_routing_replicas_gutter_and_rewrites() -> None:
    table = RouteTable(["a:1", "b:1"], ["g:1"], {"hot:": ["r1:1", "r2:1", "r3:1"]})
    assert table.write_targets(b"hot:x") == ["r1:1", "r2:1", "r3:1"]
    assert {table.read_target(b"hot:x") for _ in range(6)} == {"r1:1", "r2:1", "r3:1"}
    assert table.write_targets(b"cold") in (["a:1"], ["b:1"])
    assert table.gutter_for(b"cold") == "g:1"
    h = Health(probe_interval_s=1.0)
    h.failed("a:1", 10.0)
    assert not h.usable("a:1", 10.5)
    assert h.usable("a:1", 11.1)                   # one probe after the interval
    assert not h.usable("a:1", 11.2)
    p = RequestParser()
    p.feed(b"set k 0 0 1 noreply\r\nx\r\nms k 1 T100 q\r\ny\r\nset k 0 -1 1\r\nz\r\n")
    r1, r2, r3 = p.next(), p.next(), p.next()
    assert r1 is not None and r2 is not None and r3 is not None
    s1, quiet = strip_quiet(r1)
    assert quiet and s1.encode() == b"set k 0 0 1\r\nx\r\n"
    s2, quiet2 = strip_quiet(r2)
    assert quiet2 and b" q" not in s2.encode() and quiet_reply(r2, b"HD\r\n")
    assert not quiet_reply(r2, b"NS\r\n")
    assert cap_ttl(r1).encode() == b"set k 0 10 1 noreply\r\nx\r\n"
    assert b"T10" in cap_ttl(r2).encode()
    assert cap_ttl(r3).args[2] == b"-1"            # an already-expired set stays expired


def test_squeal_round_needs_every_cluster_and_resends() -> None:
    core = SquealCore(["c1", "c2"], markers=True)
    assert core.next_read() == 0
    assert core.next_read() is None                 # one read at a time
    batches = core.on_entries([(1, "a", 1, "x"), (2, "b", 1, "y"), (3, "a", 2, "z")], 0.0)
    assert [b.keys for b in batches] == [["a", "rm:a", "b", "rm:b"]] * 2
    assert not core.on_ack("c1", batches[0].round_id)
    assert core.position == 0
    assert [b.target for b in core.due(1.0)] == ["c2"]   # c2 did not answer: resend
    assert core.on_ack("c2", batches[1].round_id)
    assert core.position == 3
    assert core.next_read() == 3


@given(st.binary(min_size=1, max_size=260).filter(lambda k: b"\n" not in k and b" " not in k),
       st.booleans())
@settings(max_examples=200, deadline=None)
def test_single_get_fast_path_equals_the_general_path(key: bytes, stored: bool) -> None:
    fast, slow = Session(Server(Store())), Session(Server(Store()))
    if stored and len(key) <= 250 and b"\r" not in key:
        for s in (fast, slow):
            s.feed(b"set %b 7 0 2\r\nhi\r\n" % key, NOW)
    request = b"get %b\r\n" % key
    assert fast.feed(request, NOW) == slow.feed(request[:3], NOW) + slow.feed(request[3:], NOW)


@given(st.lists(st.binary(max_size=12), min_size=1, max_size=7), st.binary(max_size=40))
@settings(max_examples=300, deadline=None)
def test_set_fast_path_equals_the_general_path(tokens: list[bytes], value: bytes) -> None:
    """Whatever follows ``set ``, one-chunk and split feeding give the same replies and
    the same stored state."""
    line = b"set " + b" ".join(tokens)
    for data in (line + b"\r\n" + value + b"\r\n", b"set k 3 0 %d\r\n%b\r\n" % (len(value), value)):
        fast, slow = Session(Server(Store())), Session(Server(Store()))
        out_fast = fast.feed(data, NOW) + fast.feed(b"mn\r\n", NOW)
        out_slow = slow.feed(data[:2], NOW) + slow.feed(data[2:], NOW) + slow.feed(b"mn\r\n", NOW)
        assert out_fast == out_slow
        assert fast.closed == slow.closed
        for key in fast.store.keys():
            a, b = fast.store.peek(key, NOW), slow.store.peek(key, NOW)
            assert a is not None and b is not None
            assert (a.value, a.flags, a.exptime) == (b.value, b.flags, b.exptime)
