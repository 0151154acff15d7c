"""The transport conformance suite against the TCP transport (real loopback sockets)."""

from __future__ import annotations

import pytest

from giants.core.testing.transport_conformance import TcpKit, TransportConformance


class TestTcpTransport(TransportConformance):
    @pytest.fixture
    def kit(self) -> TcpKit:
        return TcpKit()

    @pytest.fixture
    def transport_clock(self) -> None:
        return None
