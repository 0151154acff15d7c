"""Integration: the ``lock_service`` capability named ``chubby`` on a Chubby cell whose
replicas run the *paxos* consensus plugin (Burrows, OSDI 2006, §2.1 primary election,
§2.4 sequencers; the cell's log on Multi-Paxos as in Paxos Made Live), started from a
TOML cluster spec as real processes.

Two client sessions obtained from ``registry.lock_service("chubby")`` pass an exclusive
lock back and forth across a SIGKILL of the cell's master: the holder keeps the lock and
its session, the other session's ``acquire(timeout_s=...)`` is refused, and that same
session then takes the lock once it is free (as a user would retry; this used to time
out, docs/integration.md finding 2); the fencing tokens' generations only ever grow.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from giants.core.cluster import parse_spec
from giants.core.errors import Timeout
from giants.core.interfaces import LockService
from giants.core.launcher import LocalCluster
from giants.core.plugins import load_registry

pytestmark = pytest.mark.real

SPEC = """
name = "locks-on-paxos"
base_port = 0
data_dir = "{data_dir}"

[services.locks]
system = "chubby"
nodes = 3
consensus = "paxos"
options = { lease_s = 2.0, keepalive_margin_s = 0.5, lock_delay_s = 2.0 }
"""
CLIENT_OPTIONS = {"grace_s": 20.0, "attempt_s": 0.5, "op_timeout_s": 30.0}


async def _agreed_master(endpoints: list[str], not_: str = "") -> tuple[str, int]:
    """``(master, epoch)`` once every live replica in ``endpoints`` names the same master
    (other than ``not_``): right after start-up or a fail-over replicas may still name a
    candidate that did not win, or the dead master."""
    from giants.chubby.testing import find_master

    with trio.fail_after(30):
        while True:
            seen: set[tuple[str, int] | None] = set()
            for e in endpoints:
                try:
                    seen.add(await find_master([e], deadline_s=2.0))
                except trio.TooSlowError:   # this replica names no master yet
                    seen.add(None)
            agreed = next(iter(seen))
            if len(seen) == 1 and agreed is not None and agreed[0] != not_:
                return agreed
            await trio.sleep(0.1)


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root: Path = tmp_path_factory.mktemp("chubby-paxos")
    spec = parse_spec(tomllib.loads(SPEC.replace("{data_dir}", str(root / "data"))))
    with LocalCluster.from_spec(spec, ready_timeout_s=60.0) as cluster:
        yield cluster


async def test_fencing_tokens_grow_across_a_master_kill(cell: LocalCluster) -> None:
    endpoints = cell.service_endpoints("locks")["replica"]
    assert len(endpoints) == 3
    for inst in cell.services[0].instances:
        assert inst.config["consensus"] == "paxos"
    factory = load_registry().lock_service("chubby")
    master, epoch = await _agreed_master(endpoints)
    async with factory(endpoints, user="a", **CLIENT_OPTIONS) as a, \
            factory(endpoints, user="b", **CLIENT_OPTIONS) as b:
        assert isinstance(a, LockService) and isinstance(b, LockService)
        t1 = await a.acquire("svc/master", timeout_s=10)
        assert await b.check_sequencer(t1)
        with pytest.raises(Timeout):            # b is the rival, and asks again below
            await b.acquire("svc/master", timeout_s=0.5)
        await a.release("svc/master")
        assert not await b.check_sequencer(t1)

        async with b.leadership("svc/master", "node-b") as t2:
            assert t2.generation > t1.generation
            assert await a.leader("svc/master") == "node-b"

            # SIGKILL the master: b's session and lock outlive it
            await trio.to_thread.run_sync(cell.kill, master)
            live = [e for i, e in enumerate(endpoints) if f"chubby-{i}" != master]
            _new_master, new_epoch = await _agreed_master(live, not_=master)
            assert new_epoch > epoch
            assert await a.check_sequencer(t2), "the new master forgot b's lock"
            with pytest.raises(Timeout):        # a is the rival now, at the new master
                await a.acquire("svc/master", timeout_s=0.5)
            assert await a.leader("svc/master") == "node-b"

        t3 = await a.acquire("svc/master", timeout_s=10)    # the same session asks again
        assert t3.generation > t2.generation
        assert not await b.check_sequencer(t2) and await b.check_sequencer(t3)
        await a.release("svc/master")
    await trio.to_thread.run_sync(cell.restart, master)
    assert cell.reap() == []
