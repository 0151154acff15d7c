"""Bad input gets memcached's own error strings; the connection and others survive.

What a memcached client can send wrong (doc/protocol.txt "Error strings"): unknown
commands, over-long keys, bad numbers, a data block of the wrong length, a value over
the item size limit, an endless line, a disconnect in the middle of a value.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def port(server_port: int) -> int:
    return server_port


def test_unknown_command_and_wrong_arity(port: int, raw) -> None:
    r = raw(port)
    assert r.ask(b"bogus\r\n") == b"ERROR\r\n"
    assert r.ask(b"get\r\n") == b"ERROR\r\n"
    assert r.ask(b"set a\r\n") == b"ERROR\r\n"
    assert r.ask(b"touch a\r\n") == b"ERROR\r\n"
    assert r.ask(b"\r\n") == b"ERROR\r\n"
    assert r.ask(b"stats bogus\r\n") == b"ERROR\r\n"
    assert r.ask(b"set ok 0 0 2\r\nhi\r\n") == b"STORED\r\n"   # still usable


def test_bad_numbers_and_long_keys(port: int, raw) -> None:
    r = raw(port)
    assert r.ask(b"set a b c d\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    assert r.ask(b"set a 0 0 -1\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    long_key = b"k" * 251
    # memcached does not swallow the block after a bad line: "x" is then a command.
    assert r.ask(b"set " + long_key + b" 0 0 1\r\nx\r\n", b"ERROR\r\n") == (
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    assert r.ask(b"get " + long_key + b"\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    assert r.ask(b"incr a abc\r\n") == b"CLIENT_ERROR invalid numeric delta argument\r\n"
    assert r.ask(b"incr a -1\r\n") == b"CLIENT_ERROR invalid numeric delta argument\r\n"
    assert r.ask(b"delete a 5\r\n").startswith(b"CLIENT_ERROR bad command line format.")
    assert r.ask(b"mg a zz\r\n") == b"CLIENT_ERROR invalid flag\r\n"
    assert r.ask(b"set n 0 0 1\r\nx\r\n") == b"STORED\r\n"
    assert r.ask(b"incr n 1\r\n") == (
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    assert r.ask(b"get n\r\n", b"END\r\n") == b"VALUE n 0 1\r\nx\r\nEND\r\n"


def test_bad_data_chunk(port: int, raw) -> None:
    r = raw(port)
    assert r.ask(b"set a 0 0 3\r\nabcd\r\n", b"ERROR\r\n") == (
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    assert r.ask(b"get a\r\n") == b"END\r\n"                   # nothing was stored
    assert r.ask(b"set a 0 0 3\r\nabc\r\n") == b"STORED\r\n"


def test_too_large_is_swallowed_even_in_pieces(port: int, raw) -> None:
    r = raw(port)
    r.send(b"set big 0 0 2000000\r\n")
    assert r.line() == b"SERVER_ERROR object too large for cache\r\n"
    for _ in range(20):
        r.send(b"z" * 100_000)
    r.send(b"\r\nget big\r\n")
    assert r.read_until(b"END\r\n") == b"END\r\n"
    assert r.ask(b"ms big 2000000 T0\r\n") == b"SERVER_ERROR object too large for cache\r\n"
    r.send(b"q" * 2_000_000 + b"\r\n")
    assert r.ask(b"version\r\n").startswith(b"VERSION ")


def test_line_too_long_closes_only_that_connection(port: int, raw) -> None:
    bad, good = raw(port), raw(port)
    bad.send(b"x" * 20_000)
    assert bad.line() == b"CLIENT_ERROR line is too long\r\n"
    assert bad.closed_by_peer()
    assert good.ask(b"set g 0 0 1\r\ng\r\n") == b"STORED\r\n"


def test_disconnect_mid_value_stores_nothing_and_others_go_on(port: int, raw) -> None:
    quitter, other = raw(port), raw(port)
    assert other.ask(b"set keep 0 0 4\r\nkeep\r\n") == b"STORED\r\n"
    quitter.send(b"set half 0 0 100\r\n" + b"h" * 40)
    other.send(b"set mid 0 0 1\r\nm\r\n")
    assert other.line() == b"STORED\r\n"
    quitter.close()
    assert other.ask(b"get half keep mid\r\n", b"END\r\n") == (
        b"VALUE keep 0 4\r\nkeep\r\nVALUE mid 0 1\r\nm\r\nEND\r\n")


def test_pipelined_requests_split_anywhere(port: int, raw) -> None:
    r = raw(port)
    stream = (b"set p 0 0 5\r\nhello\r\nget p\r\nappend p 0 0 1\r\n!\r\n"
              b"gets p\r\ndelete p\r\nget p\r\nmn\r\n")
    for i in range(len(stream)):
        r.send(stream[i:i + 1])
    out = r.read_until(b"MN\r\n")
    assert out.startswith(b"STORED\r\nVALUE p 0 5\r\nhello\r\nEND\r\nSTORED\r\nVALUE p 0 6 ")
    assert out.endswith(b"\r\nhello!\r\nEND\r\nDELETED\r\nEND\r\nMN\r\n")


def test_quit_and_shutdown(port: int, raw) -> None:
    r = raw(port)
    assert r.ask(b"shutdown\r\n") == b"ERROR: shutdown not enabled\r\n"
    r.send(b"quit\r\n")
    assert r.closed_by_peer()
    assert raw(port).ask(b"version\r\n").startswith(b"VERSION")


def test_concurrent_clients_lose_no_update(port: int) -> None:
    """Many connections at once (spread over the worker loops): no update is lost."""
    import threading

    from pymemcache.client.base import Client

    Client(("127.0.0.1", port)).set(b"ctr", b"0", noreply=False)

    def bump() -> None:
        c = Client(("127.0.0.1", port), timeout=10)
        for _ in range(200):
            c.incr(b"ctr", 1, noreply=False)
        c.close()

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Client(("127.0.0.1", port)).get(b"ctr").strip() == b"1600"


def test_pipelined_gets_of_large_values_are_served_in_bounded_batches(port: int, raw) -> None:
    """40 pipelined gets of a 500 KB value (20 MB of replies) in one write: the server
    answers them all, in order, a few MB at a time."""
    r = raw(port)
    big = bytes(range(256)) * 2000
    assert r.ask(b"set big 0 0 %d\r\n%b\r\n" % (len(big), big)) == b"STORED\r\n"
    r.send(b"get big\r\n" * 40 + b"mn\r\n")
    block = b"VALUE big 0 %d\r\n%b\r\nEND\r\n" % (len(big), big)
    for _ in range(40):
        assert r.read_until(b"END\r\n") == block
    assert r.line() == b"MN\r\n"
