"""mcrouter's routing decisions, sans-I/O: pools, replication, failover to Gutter.

Scaling Memcache at Facebook §3.1-§3.3 and the mcrouter role:

* the **main pool** shards keys by consistent hashing (``_hashring``);
* **replicated pools** (§3.2.3): keys with a configured prefix live on every server of
  that pool; a read goes to one replica (spread by key and a per-router counter), every
  write and every delete goes to all replicas;
* **Gutter** (§3.3): when a main-pool server does not answer, the request goes to the
  Gutter pool (hashed over the Gutter servers) instead of rehashing onto the survivors;
  sets there get a short TTL (``GUTTER_TTL_S``) so Gutter entries age out rather than
  need invalidation; deletes for a key whose server is down go to Gutter too, so an
  invalidation is not lost while Gutter serves that key;
* ``Health`` marks a server down after a failure and lets one request probe it again
  after ``PROBE_INTERVAL_S`` (time is an input).

Request rewriting for forwarding: ``noreply`` and the meta ``q`` flag are stripped (the
router waits for every reply to keep its replies in order, then suppresses what the
client asked not to see); exptimes are capped when a set goes to Gutter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from giants.memcache._hashring import HashRing
from giants.memcache._protocol import Request

__all__ = ["Health", "RouteTable", "GUTTER_TTL_S", "PROBE_INTERVAL_S", "quiet_reply",
           "strip_quiet", "cap_ttl"]

# The paper's Gutter entries expire quickly; mcrouter's default gutter TTL is 10 s.
GUTTER_TTL_S: Final = 10
# How long a failed server is skipped before one request probes it again.
PROBE_INTERVAL_S: Final = 1.0

_QUIET_META: Final = {b"mg": (b"EN",), b"ms": (b"HD",), b"md": (b"HD",), b"ma": (b"HD",)}


@dataclass
class Health:
    """Which servers are believed down, and when each may be probed again."""

    probe_interval_s: float = PROBE_INTERVAL_S
    _down_until: dict[str, float] = field(default_factory=dict)
    failures: int = 0

    def usable(self, server: str, now: float) -> bool:
        until = self._down_until.get(server)
        if until is None:
            return True
        if now >= until:
            # Half-open: let this request probe; a failure re-arms the interval.
            self._down_until[server] = now + self.probe_interval_s
            return True
        return False

    def failed(self, server: str, now: float) -> None:
        self.failures += 1
        self._down_until[server] = now + self.probe_interval_s

    def succeeded(self, server: str) -> None:
        self._down_until.pop(server, None)

    def down(self, now: float) -> list[str]:
        return sorted(s for s, t in self._down_until.items() if t > now)


class RouteTable:
    """Where each key lives. ``replicated`` maps a key prefix to its replica servers."""

    def __init__(self, pool: Sequence[str], gutter: Sequence[str] = (),
                 replicated: Mapping[str, Sequence[str]] | None = None) -> None:
        self.ring = HashRing(pool)
        self.gutter_ring = HashRing(gutter) if gutter else None
        self.replicated = sorted(((p.encode(), list(s)) for p, s in (replicated or {}).items()),
                                 key=lambda kv: -len(kv[0]))
        self._spread = 0

    def all_servers(self) -> list[str]:
        out = list(self.ring.servers)
        for _, servers in self.replicated:
            out += [s for s in servers if s not in out]
        return out

    def replicas(self, key: bytes) -> list[str] | None:
        for prefix, servers in self.replicated:
            if key.startswith(prefix):
                return servers
        return None

    def read_target(self, key: bytes) -> str:
        """One server to read ``key`` from."""
        reps = self.replicas(key)
        if reps is None:
            return self.ring.lookup(key)
        self._spread += 1
        return reps[self._spread % len(reps)]

    def write_targets(self, key: bytes) -> list[str]:
        """Every server a set/delete of ``key`` must reach."""
        reps = self.replicas(key)
        return [self.ring.lookup(key)] if reps is None else list(reps)

    def gutter_for(self, key: bytes) -> str | None:
        return None if self.gutter_ring is None else self.gutter_ring.lookup(key)


def strip_quiet(req: Request) -> tuple[Request, bool]:
    """The request without ``noreply`` / meta ``q`` (so every forward gets a reply), and
    whether the client asked for quiet."""
    args = req.args
    if req.name in _QUIET_META:
        if b"q" not in args[1:]:
            return req, False
        new = Request(req.name, [a for i, a in enumerate(args) if i == 0 or a != b"q"],
                      req.data)
        return new, True
    if req.noreply:
        return Request(req.name, args[:-1], req.data), True
    return req, False


def quiet_reply(req: Request, reply: bytes) -> bool:
    """Whether a quiet request's ``reply`` is one the client must not see: text
    ``noreply`` hides everything; meta ``q`` hides only the uninteresting codes."""
    codes = _QUIET_META.get(req.name)
    if codes is None:
        return True
    return reply.split(b" ", 1)[0].rstrip(b"\r\n") in codes


def cap_ttl(req: Request, ttl_s: int = GUTTER_TTL_S) -> Request:
    """A storage request whose TTL is at most ``ttl_s`` (for Gutter)."""
    if req.name == b"ms":
        flags = [a for a in req.args[2:] if not a.startswith(b"T")]
        old = [int(a[1:]) for a in req.args[2:] if a.startswith(b"T") and a[1:].isdigit()]
        ttl = min([ttl_s, *[t for t in old if t > 0]])
        return Request(b"ms", [*req.args[:2], *flags, b"T%d" % ttl], req.data)
    if req.name in (b"set", b"add", b"replace", b"cas", b"append", b"prepend"):
        args = list(req.args)
        old_ttl = int(args[2])
        args[2] = b"%d" % (ttl_s if old_ttl == 0 or old_ttl > ttl_s else old_ttl)
        return Request(req.name, args, req.data)
    return req
