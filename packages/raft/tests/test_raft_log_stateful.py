"""Hypothesis stateful test: ``RaftLog`` against a naive model (a plain list of every
entry ever kept, plus the compaction point).

Appends, truncations, compactions and resets in any order; after every step the log's
indexes, terms, slices and back-off helpers agree with the model.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from giants.raft._log import RaftLog


class LogModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.log = RaftLog()
        self.model: list[list[Any]] = [[0, None]]   # model[i] = entry i; entry 0 = sentinel
        self.base = 0

    @property
    def last(self) -> int:
        return len(self.model) - 1

    @rule(bump=st.integers(0, 2), data=st.binary(max_size=8))
    def append(self, bump: int, data: bytes) -> None:
        term = max(1, self.model[-1][0]) + bump
        assert self.log.append(term, data) == self.last + 1
        self.model.append([term, data])

    @precondition(lambda self: self.last > self.base)
    @rule(k=st.integers(0, 10))
    def truncate(self, k: int) -> None:
        index = max(self.base, self.last - k)
        self.log.truncate_after(index)
        del self.model[index + 1:]

    @precondition(lambda self: self.last > self.base)
    @rule(k=st.integers(0, 10))
    def compact(self, k: int) -> None:
        index = max(self.base, self.last - k)
        self.log.compact(index)
        self.base = index

    @rule(skip=st.integers(1, 5))
    def reset_to_snapshot(self, skip: int) -> None:
        index, term = self.last + skip, max(1, self.model[-1][0]) + 1
        self.log.reset(index, term)
        self.model = self.model + [[term, b"snap"]] * skip
        self.base = index

    @invariant()
    def agrees(self) -> None:
        log = self.log
        assert (log.base_index, log.last_index) == (self.base, self.last)
        assert log.base_term == self.model[self.base][0]
        assert log.last_term == self.model[-1][0]
        assert log.term_at(self.base - 1) is None or self.base == 0
        assert log.term_at(self.last + 1) is None
        for i in range(self.base + 1, self.last + 1):
            assert log.term_at(i) == self.model[i][0]
            assert log.entry(i) == self.model[i]
        if self.last > self.base:
            lo = self.base + 1
            assert log.slice(lo, 3, 1 << 20) == self.model[lo:lo + 3]
            i = self.last
            first = log.first_index_of_term(i)
            assert all(self.model[j][0] == self.model[i][0] for j in range(first, i + 1))
            assert first == self.base + 1 or self.model[first - 1][0] != self.model[i][0]
            t = self.model[i][0]
            assert log.last_index_of_term(t) == i


TestRaftLogModel = LogModel.TestCase
TestRaftLogModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                    derandomize=True, database=None)
