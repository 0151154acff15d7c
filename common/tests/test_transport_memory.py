"""The transport conformance suite against the in-memory transport, on an autojump
MockClock (so timeouts and backoffs cost no real time)."""

from __future__ import annotations

import pytest
import trio.testing

from giants.core.testing.transport_conformance import MemoryKit, TransportConformance


class TestMemoryTransport(TransportConformance):
    @pytest.fixture
    def kit(self) -> MemoryKit:
        return MemoryKit()

    @pytest.fixture
    def transport_clock(self) -> trio.testing.MockClock:
        return trio.testing.MockClock(autojump_threshold=0)
