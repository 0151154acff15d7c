"""Semantic checks of Multi-Paxos messages, after the codec checked their types.

The bad-input rule (DESIGN.md): a malformed message from the network is refused with a
log line and changes no state. The codec guarantees field types; these checks catch
well-typed nonsense -- a ballot that is not the sender's, slots below 1, unknown entry
kinds, a no-op carrying data, an undecodable configuration, a negative commit, a
snapshot index without a snapshot.
"""

from __future__ import annotations

from typing import Any

from giants.paxos._config import unpack_config
from giants.paxos._log import KINDS
from giants.paxos._messages import Accept, CatchUpRequest, Learn, Prepare, Promise

__all__ = ["malformed", "bad_entry"]


def bad_entry(slot: Any, kind: Any, data: Any) -> str | None:
    if slot < 1:
        return f"slot {slot} < 1"
    if kind not in KINDS:
        return f"unknown entry kind {kind!r}"
    if (kind == "noop") != (data is None):
        return f"{kind} entry with data {type(data).__name__}"
    if kind == "conf":
        try:
            unpack_config(data)
        except ValueError as exc:
            return str(exc)
    return None


def malformed(body: Any, src: str) -> str | None:
    """Why ``body`` is semantically malformed (the codec checked the types), or None."""
    ballot = getattr(body, "ballot", None)
    if isinstance(body, (Prepare, Accept)) and (ballot is None or ballot[1] != src or ballot[0] < 1):
        return f"ballot {ballot} is not the sender's"
    if isinstance(body, (Prepare, CatchUpRequest)) and body.from_slot < 1:
        return f"from_slot {body.from_slot} < 1"
    if isinstance(body, Accept):
        for slot, kind, data in body.entries:
            why = bad_entry(slot, kind, data)
            if why:
                return why
        if body.commit < 0:
            return "negative commit"
    if isinstance(body, Promise):
        for slot, _rnd, _node, kind, data in body.accepted:
            why = bad_entry(slot, kind, data)
            if why:
                return why
    if isinstance(body, Learn):
        if (body.snapshot is None) != (body.snap_index == 0) or body.snap_index < 0:
            return "snapshot and snap_index disagree"
        for slot, kind, data in body.entries:
            why = bad_entry(slot, kind, data)
            if why:
                return why
    return None
