"""Fixtures of the 2PC tests: the fault-tolerant consensus plugins to replicate the
coordinator on -- whichever of raft / paxos are installed.

``fault_tolerant_consensus`` is the first installed (raft preferred), for the long
sweeps; ``each_fault_tolerant_consensus`` parametrizes a test over all installed ones.
Neither exists without one: the replicated coordinator's claims cannot be tested on
the core's single-node ``solo``, so the run stops with a usage error naming what to
install rather than passing vacuously.
"""

from __future__ import annotations

from typing import Any

import pytest

from giants.core.plugins import load_registry

FAULT_TOLERANT = ("raft", "paxos")


def _installed() -> list[tuple[str, Any]]:
    registry = load_registry()
    have = [(n, registry.consensus(n)) for n in FAULT_TOLERANT
            if n in registry.names("consensus")]
    if not have:
        raise pytest.UsageError(
            f"the replicated-coordinator tests need one of {FAULT_TOLERANT} installed "
            f"(installed consensus plugins: {registry.names('consensus')})")
    return have


@pytest.fixture(scope="session")
def fault_tolerant_consensus() -> tuple[str, Any]:
    return _installed()[0]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "each_fault_tolerant_consensus" in metafunc.fixturenames:
        have = _installed()
        metafunc.parametrize("each_fault_tolerant_consensus", have,
                             ids=[name for name, _ in have])
