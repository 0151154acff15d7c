"""The Raft log in memory (paper §5.3, §7): entries after a compacted prefix.

``base_index``/``base_term`` name the last entry discarded by compaction (0/0 for a
fresh log); entries ``base_index + 1 .. last_index`` are held as ``[term, data]`` lists,
exactly as they travel and are persisted. Pure data structure: the core decides what to
append, truncate and compact and records the matching durable effects itself.

``changed_from`` is the lowest index appended or truncated since an invariant checker
last reset it (to ``None``); the core never reads it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RaftLog", "CONFIG", "is_config"]

CONFIG = "voters"  # key marking a configuration entry's data


def is_config(data: Any) -> bool:
    return isinstance(data, dict)


class RaftLog:
    def __init__(self, base_index: int = 0, base_term: int = 0) -> None:
        self.base_index = base_index
        self.base_term = base_term
        self.entries: list[list[Any]] = []
        self.changed_from: int | None = None

    # -- reading ------------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1][0] if self.entries else self.base_term

    def term_at(self, index: int) -> int | None:
        """The term of entry ``index``; None if compacted away or beyond the log."""
        if index == self.base_index:
            return self.base_term
        if index < self.base_index or index > self.last_index:
            return None
        term: int = self.entries[index - self.base_index - 1][0]
        return term

    def entry(self, index: int) -> list[Any]:
        assert self.base_index < index <= self.last_index, f"no entry {index}"
        return self.entries[index - self.base_index - 1]

    def slice(self, lo: int, max_entries: int, max_bytes: int) -> list[list[Any]]:
        """Entries from ``lo`` on: at most ``max_entries``, and stop once ``max_bytes``
        of command data is reached (always at least one entry if any exists)."""
        assert lo > self.base_index, f"slice from compacted index {lo}"
        start = lo - self.base_index - 1
        out = self.entries[start:start + max_entries]
        size = 0
        for i, e in enumerate(out):
            data = e[1]
            size += len(data) if isinstance(data, bytes) else 64
            if size >= max_bytes and i + 1 < len(out):
                return out[:i + 1]
        return out

    def first_index_of_term(self, index: int) -> int:
        """The first index held of the term of entry ``index`` (fast back-off hint)."""
        term = self.term_at(index)
        while index - 1 > self.base_index and self.term_at(index - 1) == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int) -> int | None:
        """The last index held whose term is ``term`` (the leader's side of back-off)."""
        for i in range(len(self.entries) - 1, -1, -1):
            t = self.entries[i][0]
            if t == term:
                return self.base_index + i + 1
            if t < term:
                return None
        return None

    # -- changing -----------------------------------------------------------------------

    def _mark(self, index: int) -> None:
        if self.changed_from is None or index < self.changed_from:
            self.changed_from = index

    def append(self, term: int, data: Any) -> int:
        assert term >= self.last_term, f"term {term} after {self.last_term}"
        self.entries.append([term, data])
        self._mark(self.last_index)
        return self.last_index

    def extend(self, entries: list[list[Any]]) -> None:
        if entries:
            self._mark(self.last_index + 1)
            self.entries.extend(entries)

    def truncate_after(self, index: int) -> None:
        """Drop every entry after ``index``."""
        assert index >= self.base_index
        del self.entries[index - self.base_index:]
        self._mark(index + 1)

    def compact(self, index: int) -> None:
        """Discard entries up to and including ``index`` (held, so its term is known)."""
        assert self.base_index <= index <= self.last_index
        term = self.term_at(index)
        assert term is not None
        del self.entries[:index - self.base_index]
        self.base_index, self.base_term = index, term

    def reset(self, index: int, term: int) -> None:
        """Discard everything: the log now starts after a snapshot at ``index``."""
        self.entries = []
        self.base_index, self.base_term = index, term
        self._mark(index + 1)
