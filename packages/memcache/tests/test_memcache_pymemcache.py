"""pymemcache, unchanged, against our server and through our router (every text command).

Scaling Memcache at Facebook §2: memcached's protocol is the contract; a standard client
must not notice it talks to giants. Expiry is driven by the server's injected clock.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError


def client(port: int) -> Client:
    return Client(("127.0.0.1", port), connect_timeout=5, timeout=5, default_noreply=False)


def test_set_get_add_replace_append_prepend(target_port: int) -> None:
    c = client(target_port)
    assert c.set(b"k", b"v", noreply=False)
    assert c.get(b"k") == b"v"
    assert not c.add(b"k", b"other", noreply=False)
    assert c.add(b"fresh", b"1", noreply=False)
    assert c.replace(b"k", b"v2", noreply=False)
    assert not c.replace(b"missing", b"x", noreply=False)
    assert c.append(b"k", b"-tail", noreply=False)
    assert c.prepend(b"k", b"head-", noreply=False)
    assert c.get(b"k") == b"head-v2-tail"
    assert not c.append(b"missing", b"x", noreply=False)
    assert c.get(b"missing") is None


def test_flags_are_kept(target_port: int) -> None:
    c = client(target_port)
    c.raw_command(b"set f 4242 0 1\r\nx", b"\r\n")
    assert c.raw_command(b"get f", b"END\r\n") == b"VALUE f 4242 1\r\nx\r\n"


def test_cas(target_port: int) -> None:
    c = client(target_port)
    c.set(b"c", b"1")
    value, token = c.gets(b"c")
    assert value == b"1"
    assert c.cas(b"c", b"2", token, noreply=False) is True
    assert c.cas(b"c", b"3", token, noreply=False) is False       # EXISTS: stale token
    assert c.cas(b"nope", b"3", token, noreply=False) is None     # NOT_FOUND
    assert c.get(b"c") == b"2"


def test_noreply_pipelines_silently(target_port: int) -> None:
    c = client(target_port)
    for i in range(50):
        c.set(f"n{i}".encode(), str(i).encode(), noreply=True)
    c.delete(b"n0", noreply=True)
    c.incr(b"n1", 5, noreply=True)
    assert c.get(b"n0") is None
    assert c.get(b"n1") == b"6"
    assert c.get(b"n49") == b"49"


def test_multi_get(target_port: int) -> None:
    c = client(target_port)
    keys = [f"m{i}".encode() for i in range(60)]
    for i, k in enumerate(keys[:40]):
        c.set(k, str(i).encode())
    got = c.get_many(keys)
    assert got == {k: str(i).encode() for i, k in enumerate(keys[:40])}
    many = c.gets_many(keys[:3])
    assert set(many) == set(keys[:3]) and all(tok for _, tok in many.values())


def test_delete(target_port: int) -> None:
    c = client(target_port)
    c.set(b"d", b"x")
    assert c.delete(b"d", noreply=False) is True
    assert c.delete(b"d", noreply=False) is False
    assert c.get(b"d") is None


def test_incr_decr_overflow_and_floor(target_port: int) -> None:
    c = client(target_port)
    c.set(b"n", b"10")
    assert c.incr(b"n", 5) == 15
    assert c.decr(b"n", 100) == 0                     # decr floors at 0
    c.set(b"big", str(2**64 - 2).encode())
    assert c.incr(b"big", 3) == 1                      # incr wraps at 2**64
    assert c.incr(b"missing", 1) is None
    c.set(b"text", b"abc")
    with pytest.raises(MemcacheClientError):
        c.incr(b"text", 1)
    c.set(b"pad", b"100")
    assert c.decr(b"pad", 91) == 9
    assert c.get(b"pad") == b"9  "                     # memcached pads in place


def test_touch_gat_gats(target_port: int) -> None:
    c = client(target_port)
    c.set(b"t", b"v")
    assert c.touch(b"t", 100, noreply=False) is True
    assert c.touch(b"missing", 100, noreply=False) is False
    assert c.raw_command(b"gat 0 t", b"END\r\n") == b"VALUE t 0 1\r\nv\r\n"
    out = c.raw_command(b"gats 0 t", b"END\r\n")
    assert out.startswith(b"VALUE t 0 1 ") and out.endswith(b"\r\nv\r\n")


def test_expiry_relative_absolute_and_touch(target_port: int, clock) -> None:
    c = client(target_port)
    now = int(clock())
    c.set(b"rel", b"1", expire=10)
    c.set(b"abs", b"2", expire=now + 100)           # > 30 days: an absolute unix time
    c.set(b"past", b"3", expire=now - 100)          # absolute in the past: already gone
    c.set(b"neg", b"4", expire=-1)                  # negative: expired at once
    c.set(b"tch", b"5", expire=10)
    assert c.get(b"past") is None and c.get(b"neg") is None
    clock.advance(9)
    assert c.get(b"rel") == b"1"
    assert c.touch(b"tch", 50, noreply=False)
    clock.advance(2)
    assert c.get(b"rel") is None
    assert c.get(b"tch") == b"5"
    assert c.get(b"abs") == b"2"
    clock.advance(100)
    assert c.get(b"abs") is None
    assert c.get(b"tch") is None


def test_flush_all_now_and_delayed(target_port: int, clock) -> None:
    c = client(target_port)
    c.set(b"a", b"1")
    assert c.flush_all(noreply=False)
    assert c.get(b"a") is None
    c.set(b"b", b"2")
    assert c.flush_all(delay=5, noreply=False)
    assert c.get(b"b") == b"2"
    clock.advance(6)
    assert c.get(b"b") is None
    c.set(b"after", b"3")
    assert c.get(b"after") == b"3"


def test_stats_version_verbosity_memlimit_quit(target_port: int) -> None:
    c = client(target_port)
    c.set(b"s", b"1")
    c.get(b"s")
    stats = c.stats()
    assert b"version" in stats
    assert c.version()
    assert c.raw_command(b"verbosity 1", b"\r\n") == b"OK"
    assert c.cache_memlimit(50)
    c.stats("cachedump", "1", "1")
    c.quit()
    assert client(target_port).get(b"s") == b"1"


def test_value_over_the_limit_is_refused_and_swallowed(target_port: int) -> None:
    c = client(target_port)
    with pytest.raises(MemcacheServerError):
        c.set(b"huge", b"x" * (1024 * 1024 + 1), noreply=False)
    assert c.set(b"after", b"ok", noreply=False)
    assert c.get(b"after") == b"ok"
    near = b"y" * (1024 * 1024 - 512)
    assert c.set(b"near", near, noreply=False)
    assert c.get(b"near") == near


def test_pymemcache_own_integration_suite(target_port: int) -> None:
    """The integration tests shipped inside the pymemcache wheel, pointed at us."""
    import pymemcache.test

    suite = os.path.join(os.path.dirname(pymemcache.test.__file__), "test_integration.py")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:giants",
         "-p", "no:trio", suite, "-m", "integration", "--server", "127.0.0.1",
         "--port", str(target_port)],
        capture_output=True, text=True, timeout=300)
    assert "100 passed, 3 skipped" in proc.stdout, proc.stdout[-3000:]
