"""Chubby cell configuration and small pieces the replica core uses (Burrows, OSDI 2006,
§2.8 lease and KeepAlive timing, §2.4 lock-delay, §2.9 caching): ``CellOptions``, the
``Modification`` a write becomes while invalidations are outstanding, and helpers to
encode commands (``pack`` / ``unpack``, the core's encoding for stacked services) and
shape replies.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from giants.core.envelope import Envelope
from giants.core.errors import DefiniteError, LocalProtocolError, NotFound, Rejected
from giants.core.stacked import pack, unpack

__all__ = ["CellOptions", "Modification", "CACHED_OPS", "MAX_PARKED", "MAX_EVENTS_PER_SESSION",
           "MAX_USER_CHARS", "command_key", "pack", "unpack", "cached_stat", "error_of"]

# Reads whose results a client may cache, keyed by path.
CACHED_OPS = frozenset({"read", "lookup"})
# Bounds on the master's volatile queues (each entry is one client request).
MAX_PARKED = 10_000
MAX_EVENTS_PER_SESSION = 1_000
MAX_USER_CHARS = 256


@dataclass(frozen=True)
class CellOptions:
    """Times in seconds. The paper's defaults: a 12 s lease, lock-delay up to a minute."""

    cell: str = "cell"
    lease_s: float = 12.0
    keepalive_margin_s: float = 1.0
    lock_delay_s: float = 60.0
    snapshot_every: int = 1000

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellOptions:
        known = {f.name: f for f in fields(cls)}
        unknown = set(d) - set(known)
        if unknown:
            raise LocalProtocolError(f"unknown chubby options {sorted(unknown)}")
        values: dict[str, Any] = {k: (str(v) if k == "cell" else int(v) if k == "snapshot_every"
                                      else float(v)) for k, v in d.items()}
        out = cls(**values)
        if not 0 < out.keepalive_margin_s < out.lease_s:
            raise LocalProtocolError("keepalive_margin_s must be in (0, lease_s)")
        return out


@dataclass
class Modification:
    """A write waiting for invalidation acknowledgements before it is proposed."""

    env: Envelope | None
    command: list[Any]
    paths: list[str]
    waiting: dict[int, int]         # session -> the event seq it must acknowledge


def command_key(command: list[Any]) -> tuple[Any, ...]:
    """What identifies a proposed command: (op, session, seq) or (kind, session)."""
    return tuple(command[:3]) if command[0] == "op" else tuple(command[:2])




def cached_stat(stat: dict[str, Any]) -> dict[str, Any]:
    """The metadata a client caches: everything but lock state (which changes without
    invalidation)."""
    return {k: v for k, v in stat.items() if k != "lock_gen"}


def error_of(result: dict[str, Any]) -> DefiniteError:
    if result["error"] == "session_expired":
        return Rejected("session expired", reason="session_expired")
    cls = NotFound if result["error"] == "NotFound" else Rejected
    return cls(str(result.get("message", result["error"])), **dict(result.get("detail") or {}))
