"""Shape checks on Raft messages beyond what the codec's type checks catch.

The codec guarantees field types; this checks ranges and the shape of log entries, so
a malformed message is rejected before it can touch a core's state (issue: "malformed
gets rejected with a log line; the node keeps its state intact"). ``validate`` returns
a reason, or None when the message is well-formed.
"""

from __future__ import annotations

from typing import Any

from giants.raft._messages import (
    AppendEntries,
    AppendReply,
    InstallSnapshot,
    RequestVote,
    SnapshotReply,
)

__all__ = ["validate", "valid_config", "MAX_ENTRIES_PER_MESSAGE"]

# Far above max_batch_entries; one message cannot make a follower append without bound.
MAX_ENTRIES_PER_MESSAGE = 100_000


def _int_ok(x: Any) -> bool:
    return type(x) is int and x >= 0


def valid_config(data: Any) -> bool:
    if not isinstance(data, dict) or set(data) != {"voters", "learners"}:
        return False
    for group in data.values():
        if not isinstance(group, dict):
            return False
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in group.items()):
            return False
    return not set(data["voters"]) & set(data["learners"])


def _entries_problem(m: AppendEntries) -> str | None:
    if len(m.entries) > MAX_ENTRIES_PER_MESSAGE:
        return f"{len(m.entries)} entries in one message"
    last = m.prev_term
    for e in m.entries:
        if not isinstance(e, (list, tuple)) or len(e) != 2:
            return f"entry {e!r:.60} is not [term, data]"
        term, data = e
        if type(term) is not int or term < max(1, last) or term > m.term:
            return f"entry term {term!r} out of order (prev {last}, message term {m.term})"
        last = term
        if not (data is None or isinstance(data, bytes) or valid_config(data)):
            return f"entry data of type {type(data).__name__}"
    return None


_NOT_INDEXES = frozenset({"term", "entries", "voters", "learners", "data", "pre_vote",
                          "transfer", "granted", "success", "done"})
_INDEX_FIELDS: dict[type, tuple[str, ...]] = {}


def _index_fields(cls: type) -> tuple[str, ...]:
    names = _INDEX_FIELDS.get(cls)
    if names is None:
        names = _INDEX_FIELDS[cls] = tuple(
            f for f in getattr(cls, "__slots__", ()) if f not in _NOT_INDEXES)
    return names


def validate(body: Any) -> str | None:
    term = body.term
    if type(term) is not int or term < 1:
        return f"term {term!r}"
    for name in _index_fields(type(body)):
        if not _int_ok(getattr(body, name)):
            return f"{name} = {getattr(body, name)!r}"
    if isinstance(body, AppendEntries):
        if body.prev_term > term or (body.prev_index == 0) != (body.prev_term == 0):
            return f"prev ({body.prev_index}, {body.prev_term}) in term {term}"
        return _entries_problem(body)
    if isinstance(body, RequestVote) and body.last_term > term:
        return f"last_term {body.last_term} above term {term}"
    if isinstance(body, InstallSnapshot):
        if body.last_index < 1 or not 1 <= body.last_term <= term:
            return f"snapshot at ({body.last_index}, {body.last_term})"
        if not valid_config({"voters": body.voters, "learners": body.learners}) or not body.voters:
            return "snapshot configuration"
    if isinstance(body, AppendReply) and not body.success and body.conflict_index < 1:
        return "rejection without a conflict index"
    if isinstance(body, SnapshotReply) and body.last_index < 1:
        return "snapshot reply index"
    return None
