"""Fixtures of the 2PC tests: the fault-tolerant consensus plugin to replicate the
coordinator on -- whichever of raft / paxos is installed (raft preferred)."""

from __future__ import annotations

from typing import Any

import pytest

from giants.core.plugins import load_registry

FAULT_TOLERANT = ("raft", "paxos")


@pytest.fixture(scope="session")
def fault_tolerant_consensus() -> tuple[str, Any]:
    registry = load_registry()
    for name in FAULT_TOLERANT:
        if name in registry.names("consensus"):
            return name, registry.consensus(name)
    raise pytest.UsageError(
        f"the replicated-coordinator tests need one of {FAULT_TOLERANT} installed "
        f"(installed consensus plugins: {registry.names('consensus')})")
