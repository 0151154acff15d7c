"""Integration: one plugin registry holds every installed capability, and the consensus
plugins are interchangeable (DESIGN.md "plugins"; Raft and Paxos as ``ConsensusCore``).

Everything here goes through ``giants.core.plugins.load_registry()``: factories are
looked up by capability and name, never imported from a package.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from giants.core.plugins import Registry, load_registry
from giants.core.testing.consensus_conformance import CONFORMANCE_CHECKS

EXPECTED_CAPABILITIES = {
    "consensus": {"raft", "paxos", "solo"},
    "filesystem": {"gfs"},
    "lock_service": {"chubby"},
    "coordination": {"zookeeper"},
    "commit_protocol": {"2pc"},
    "lock_manager": {"2pl"},
}
EXPECTED_SYSTEMS = {"raft", "paxos", "kv", "2pc", "chubby", "gfs", "memcache", "zookeeper"}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def test_one_registry_holds_every_capability(registry: Registry) -> None:
    for capability, names in EXPECTED_CAPABILITIES.items():
        assert names <= set(registry.names(capability)), (capability, registry.names(capability))
    systems = {s.name for s in registry.systems()}
    assert EXPECTED_SYSTEMS <= systems, systems
    # every capability a system advertises is really provided under that name
    for system in registry.systems():
        for cap in system.capabilities:
            kind, _, name = cap.partition(":")
            assert registry.get(kind, name) is not None, (system.name, cap)


def test_capabilities_have_the_documented_shapes(registry: Registry) -> None:
    """Each capability is usable as its interface says, obtained only by name."""
    # the 2PL factory builds a LockManager with the policy asked for
    lm = registry.get("lock_manager", "2pl")("wait-die")
    assert type(lm).__name__ == "LockManager" and lm.policy.value == "wait-die"
    # the 2PC commit protocol bundle names its three sans-I/O cores
    cp = registry.get("commit_protocol", "2pc")
    for core in (cp.coordinator, cp.replicated_coordinator, cp.participant):
        assert callable(core)
    # consensus factories are callables building cores
    for name in ("raft", "paxos", "solo"):
        assert callable(registry.consensus(name))
    # the client factories are callables taking endpoints (tested on real processes below)
    for factory in (registry.filesystem("gfs"), registry.lock_service("chubby"),
                    registry.get("coordination", "zookeeper")):
        assert callable(factory)


def test_unknown_capability_names_what_is_available(registry: Registry) -> None:
    from giants.core.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError, match="paxos, raft, solo"):
        registry.consensus("viewstamped")


def test_giants_list_shows_every_system() -> None:
    out = subprocess.run([sys.executable, "-m", "giants.core.cli", "list"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert EXPECTED_SYSTEMS <= listed, out
    for capability in EXPECTED_CAPABILITIES:
        assert capability in listed, out


@pytest.mark.sim
@pytest.mark.parametrize("consensus", ["raft", "paxos"])
@pytest.mark.parametrize("check", CONFORMANCE_CHECKS, ids=lambda c: c.__name__)
def test_consensus_plugins_pass_conformance_by_name(
        registry: Registry, consensus: str, check: Callable[..., None],
        giants_seeds: Callable[[int], Any]) -> None:
    factory = registry.consensus(consensus)
    for seed in giants_seeds(3):
        check(factory, seed, options={})


@pytest.mark.sim
@pytest.mark.parametrize("consensus", ["raft", "paxos"])
def test_zookeeper_core_runs_on_either_consensus(
        registry: Registry, consensus: str, giants_seeds: Callable[[int], Any]) -> None:
    """The ZooKeeper server core, unchanged, over a consensus plugin picked by name, under
    every nemesis: its history checker (linearizable writes, FIFO client order, sessions)
    passes."""
    from giants.zookeeper.sim import run_zk_sim

    factory = registry.consensus(consensus)
    for seed in giants_seeds(3):
        res = run_zk_sim(factory, seed, ops_per_client=20)
        done = sum(1 for r in res.records if r.status == "ok")
        assert done > 20, f"seed {seed}: only {done} ops completed"


@pytest.mark.sim
@pytest.mark.parametrize("consensus", ["raft", "paxos"])
def test_chubby_cell_runs_on_either_consensus(
        consensus: str, giants_seeds: Callable[[int], Any]) -> None:
    """A Chubby cell over each consensus plugin, its master killed mid-run and a nemesis:
    no two holders of a lock, linearizable file contents, replicas agree."""
    from giants.chubby.sim import check_run, run_chubby_sim

    for seed in giants_seeds(2):
        run = run_chubby_sim(seed, consensus=consensus, replicas=3, ops_s=2.0)
        assert check_run(run) == [], f"seed {seed}"
        assert len(run.world.history.operations()) > 20
