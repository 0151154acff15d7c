"""The core's consensus conformance suite, unchanged, on the ``paxos`` plugin.

The same checks Raft runs: linearizable KV histories under every nemesis kind with
progress after heal, exactly-once application, malformed commands rejected before the
log, every acknowledged write surviving a restart of all nodes, and snapshot catch-up.
"""

from __future__ import annotations

from typing import Any

import pytest

from giants.core.plugins import load_registry
from giants.core.testing.consensus_conformance import CONFORMANCE_CHECKS
from giants.paxos import paxos_factory

SEEDS = {"check_linearizable_under_faults": 12, "check_restart_recovers_acknowledged": 12}


@pytest.mark.sim
@pytest.mark.parametrize("check", CONFORMANCE_CHECKS, ids=lambda c: c.__name__)
def test_paxos_conformance(check: Any, giants_seeds: Any) -> None:
    for seed in giants_seeds(SEEDS.get(check.__name__, 20)):
        check(paxos_factory, seed, options={})


def test_paxos_is_registered_as_consensus_plugin() -> None:
    from giants.paxos import plugin

    registry = load_registry([plugin], entry_points_too=False)
    assert registry.consensus("paxos") is paxos_factory
    system = registry.system("paxos")
    assert system.sim is not None and system.demo is not None
    assert "consensus:paxos" in system.capabilities
