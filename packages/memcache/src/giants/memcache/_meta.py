"""memcached's meta protocol (``mg/ms/md/ma/mn/me``) and the leases built on it.

Scaling Memcache at Facebook §3.2.1 (leases) as memcached's meta protocol exposes them,
so a standard meta client works unchanged:

* ``mg <key> v c N<ttl>`` -- on a miss the server creates an empty placeholder living
  ``ttl`` seconds and answers ``VA 0 c<token> W``: this client **won** the lease and
  ``<token>`` (the placeholder's 64-bit CAS) is its lease token. Until the placeholder is
  filled or expires, every other ``mg`` of the key answers ``... Z`` (a token is out:
  *wait briefly and retry*, the paper's thundering-herd rule -- one token per key per
  ``ttl``, the paper's 10 s).
* ``ms <key> <len> C<token>`` -- the fill. ``HD`` if the token still matches; ``EX`` if
  the key changed since; ``NF`` if it was deleted since (a delete invalidates the
  lease). A set computed from data read before an invalidation cannot land: the paper's
  *stale set* is rejected.
* ``md <key> I T<ttl>`` -- invalidate but keep the old value marked stale (``X``); the
  next ``mg`` wins the refill (``W``) and may use the stale value meanwhile (§3.2.1
  "stale values"). Plain ``md <key>`` deletes.

Flags implemented (memcached 1.6.18): mg ``b c f h k l O q s t u v N R T``; ms ``b c C F
I k O q T M<E|A|P|R|S>``; md ``b C I k O q T``; ma ``b C N J D T M<I|+|D|-> q O t c v k``.
Return-flag order follows memcached: requested flags in request order, then ``Z``,
``X``, ``W``. Unknown flags: ``CLIENT_ERROR invalid flag``.
"""

from __future__ import annotations

import binascii
from typing import Final

from giants.memcache._protocol import BAD_FORMAT, KEY_MAX_BYTES, Request
from giants.memcache._store import (
    MAX_U64,
    Item,
    ItemTooLarge,
    NonNumeric,
    OutOfMemory,
    Store,
    exptime_to_abs,
)

__all__ = ["execute"]

INVALID_FLAG: Final = b"CLIENT_ERROR invalid flag\r\n"
_MG_FLAGS: Final = frozenset(b"bcfhklOqstuvNRT")
_MS_FLAGS: Final = frozenset(b"bcCFIkOqTM")
_MD_FLAGS: Final = frozenset(b"bCIkOqT")
_MA_FLAGS: Final = frozenset(b"bCNJDTMqOtcvk")
_NUMERIC_FLAGS: Final = frozenset(b"CFTNRJDE")


class _BadFlag(Exception):
    """A flag this command does not take, or a bad flag argument."""


class _Flags:
    """A meta command's parsed flags: ``order`` keeps the request order for replies."""

    __slots__ = ("order", "tokens")

    def __init__(self, raw: list[bytes], allowed: frozenset[int]) -> None:
        self.order: list[int] = []
        self.tokens: dict[int, bytes] = {}
        for tok in raw:
            f = tok[0]
            if f not in allowed:
                raise _BadFlag(tok)
            self.order.append(f)
            self.tokens[f] = tok[1:]
            if f in _NUMERIC_FLAGS and f != ord("M") and not _is_int(tok[1:]):
                raise _BadFlag(tok)

    def has(self, f: str) -> bool:
        return ord(f) in self.tokens

    def num(self, f: str, default: int | None = None) -> int | None:
        tok = self.tokens.get(ord(f))
        return default if tok is None or tok == b"" else int(tok)


def _is_int(tok: bytes) -> bool:
    return tok == b"" or tok.lstrip(b"-").isdigit()


def _ttl_left(it: Item, now: float) -> int:
    return -1 if not it.exptime else max(0, int(it.exptime - now + 0.999))


def _ret_flags(flags: _Flags, key: bytes, it: Item | None, now: float,
               fetched_before: bool = False) -> list[bytes]:
    """The requested return flags, in request order (``_MG_FLAGS`` semantics)."""
    out: list[bytes] = []
    b64 = flags.has("b")
    for f in flags.order:
        c = chr(f)
        if c == "O":
            out.append(b"O" + flags.tokens[f])
        elif c == "k":
            out.append(b"k" + (binascii.b2a_base64(key, newline=False) if b64 else key))
        elif c == "b" and "k" in (chr(x) for x in flags.order):
            out.append(b"b")
        elif it is None:
            continue
        elif c == "c":
            out.append(b"c%d" % it.cas)
        elif c == "f":
            out.append(b"f%d" % it.flags)
        elif c == "s":
            out.append(b"s%d" % len(it.value))
        elif c == "t":
            out.append(b"t%d" % _ttl_left(it, now))
        elif c == "h":
            out.append(b"h1" if fetched_before else b"h0")
        elif c == "l":
            out.append(b"l%d" % int(now - it.atime))
    return out


def _line(code: bytes, parts: list[bytes]) -> bytes:
    return b" ".join((code, *parts)) + b"\r\n" if parts else code + b"\r\n"


def _key(req: Request, flags: _Flags) -> bytes:
    key = req.args[0]
    if flags.has("b"):
        try:
            key = binascii.a2b_base64(key)
        except binascii.Error:
            raise _BadFlag(key) from None
    return key


def execute(store: Store, req: Request, now: float) -> bytes | None:
    """Run one meta request; the reply bytes, or None when ``q`` suppresses it."""
    if req.name == b"mn":
        return b"MN\r\n"
    if not req.args:
        return b"ERROR\r\n"
    if len(req.args[0]) > KEY_MAX_BYTES:
        return BAD_FORMAT
    try:
        if req.name == b"mg":
            return _mg(store, req, now)
        if req.name == b"ms":
            return _ms(store, req, now)
        if req.name == b"md":
            return _md(store, req, now)
        if req.name == b"ma":
            return _ma(store, req, now)
        return _me(store, req, now)
    except _BadFlag:
        return INVALID_FLAG
    except ItemTooLarge:
        return b"SERVER_ERROR object too large for cache\r\n"
    except OutOfMemory:
        return b"SERVER_ERROR out of memory storing object\r\n"


def _mg(store: Store, req: Request, now: float) -> bytes | None:
    flags = _Flags(req.args[1:], _MG_FLAGS)
    key = _key(req, flags)
    prior = store.peek(key, now)
    fetched_before = prior is not None and prior.fetched
    it = store.get(key, now, bump=not flags.has("u"))
    tail: list[bytes] = []
    if it is None:
        vivify = flags.num("N")
        if vivify is None:
            if flags.has("q"):
                return None
            return _line(b"EN", _ret_flags(flags, key, None, now))
        it = store.vivify(key, vivify, now)
        tail.append(b"W")
    else:
        touch = flags.num("T")
        if touch is not None:
            it.exptime = exptime_to_abs(touch, now)
        if it.token_sent:
            tail.append(b"Z")
            store.stats.lease_waits += 1
        if it.stale:
            tail.append(b"X")
            if not it.token_sent:
                it.token_sent = True
                store.stats.lease_tokens += 1
                tail.append(b"W")
        recache = flags.num("R")
        if (recache is not None and not it.token_sent and it.exptime
                and _ttl_left(it, now) < recache):
            it.token_sent = True
            store.stats.lease_tokens += 1
            tail.append(b"W")
    parts = _ret_flags(flags, key, it, now, fetched_before) + tail
    if flags.has("v"):
        return b"VA %d%b\r\n%b\r\n" % (len(it.value), b"".join(b" " + p for p in parts),
                                       it.value)
    return _line(b"HD", parts)


def _ms(store: Store, req: Request, now: float) -> bytes | None:
    flags = _Flags(req.args[2:], _MS_FLAGS)
    key = _key(req, flags)
    data = req.data
    assert data is not None
    mode = flags.tokens.get(ord("M"), b"S").upper()
    if mode not in (b"S", b"E", b"A", b"P", b"R"):
        raise _BadFlag(mode)
    client_flags = flags.num("F", 0) or 0
    ttl = flags.num("T", 0) or 0
    cas = flags.num("C")
    old = store.peek(key, now)
    code = b"HD"
    stale_set = False
    if cas is not None and old is None:
        store.stats.lease_rejected += 1
        code = b"NF"
    elif cas is not None and old is not None and old.cas != cas:
        if flags.has("I") and old.stale and cas < old.cas:
            stale_set = True
        else:
            store.stats.lease_rejected += 1
            code = b"EX"
    elif mode == b"E" and (old is not None or store.held_off(key, now)):
        code = b"NS"
    elif mode in (b"A", b"P", b"R") and old is None:
        code = b"NS"
    it: Item | None = None
    if code == b"HD":
        store.stats.cmd_set += 1
        if mode == b"A" and old is not None:
            it = store.link(key, old.value + data, old.flags, old.exptime, now)
        elif mode == b"P" and old is not None:
            it = store.link(key, data + old.value, old.flags, old.exptime, now)
        else:
            it = store.link(key, data, client_flags, exptime_to_abs(ttl, now), now)
        it.stale = stale_set
        if flags.has("q"):
            return None
    return _line(code, _ret_flags(flags, key, it, now))


def _md(store: Store, req: Request, now: float) -> bytes | None:
    flags = _Flags(req.args[1:], _MD_FLAGS)
    key = _key(req, flags)
    old = store.peek(key, now)
    cas = flags.num("C")
    if old is None:
        store.delete(key, now)
        code = b"NF"
    elif cas is not None and cas != old.cas:
        code = b"EX"
    elif flags.has("I"):
        store.mark_stale(key, flags.num("T"), now)
        code = b"HD"
    else:
        store.delete(key, now)
        code = b"HD"
    if code == b"HD" and flags.has("q"):
        return None
    return _line(code, _ret_flags(flags, key, None, now))


def _ma(store: Store, req: Request, now: float) -> bytes | None:
    flags = _Flags(req.args[1:], _MA_FLAGS)
    key = _key(req, flags)
    mode = flags.tokens.get(ord("M"), b"I").upper()
    if mode not in (b"I", b"+", b"D", b"-"):
        raise _BadFlag(mode)
    delta = flags.num("D", 1)
    assert delta is not None
    if not 0 <= delta <= MAX_U64:
        raise _BadFlag(b"D")
    old = store.peek(key, now)
    cas = flags.num("C")
    if old is None:
        vivify = flags.num("N")
        if vivify is None:
            return _line(b"NF", _ret_flags(flags, key, None, now))
        initial = flags.num("J", 0) or 0
        it = store.link(key, b"%d" % initial, 0, exptime_to_abs(vivify, now), now)
    elif cas is not None and cas != old.cas:
        return _line(b"EX", _ret_flags(flags, key, None, now))
    else:
        try:
            store.arith(key, mode in (b"I", b"+"), delta, now)
        except NonNumeric:
            return b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
        cur = store.peek(key, now)
        assert cur is not None
        it = cur
        touch = flags.num("T")
        if touch is not None:
            it.exptime = exptime_to_abs(touch, now)
    parts = [p for p in _ret_flags(flags, key, it, now) if not p.startswith((b"f", b"s"))]
    if flags.has("v"):
        value = it.value.rstrip(b" ")
        return b"VA %d%b\r\n%b\r\n" % (len(value), b"".join(b" " + p for p in parts), value)
    if flags.has("q"):
        return None
    return _line(b"HD", parts)


def _me(store: Store, req: Request, now: float) -> bytes:
    key = req.args[0]
    it = store.peek(key, now)
    if it is None:
        return b"EN\r\n"
    exp = -1 if not it.exptime else int(it.exptime - now)
    return (b"ME %b exp=%d la=%d cas=%d fetch=%b cls=%d size=%d\r\n"
            % (key, exp, int(now - it.atime), it.cas, b"yes" if it.fetched else b"no",
               it.cls.index, len(it.key) + len(it.value) + 59))
