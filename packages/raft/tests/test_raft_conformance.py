"""The core's consensus conformance suite, unchanged, on Raft."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from giants.core.plugins import load_registry
from giants.core.testing.consensus_conformance import CONFORMANCE_CHECKS
from giants.raft import raft_factory


@pytest.mark.sim
@pytest.mark.parametrize("check", CONFORMANCE_CHECKS, ids=lambda c: c.__name__)
def test_conformance(check: Callable[..., None], giants_seeds: Any) -> None:
    for seed in giants_seeds(10):
        check(raft_factory, seed, options={})


def test_registered_as_the_raft_consensus_plugin() -> None:
    registry = load_registry()
    assert registry.consensus("raft") is raft_factory
    assert registry.system("raft").roles["node"].name == "node"
