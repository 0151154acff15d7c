"""Integration: two-phase commit whose coordinator is replicated on the *paxos* consensus
plugin (Gray & Lamport, "Consensus on Transaction Commit": the coordinator's decision log
on a consensus group), started from a TOML cluster spec as real processes; the shards'
transactional KV runs on strict 2PL (the ``lock_manager`` capability).

A cross-shard transfer commits atomically, the coordinator's leader is SIGKILLed, and
transfers keep committing under a new leader with the invariant (total money) intact.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from giants.core.cluster import parse_spec
from giants.core.launcher import LocalCluster

pytestmark = pytest.mark.real

SPEC = """
name = "txn-on-paxos"
base_port = 0
data_dir = "{data_dir}"

[services.bank]
system = "2pc"
nodes = 3            # coordinator replicas
shards = 2
consensus = "paxos"  # the coordinator's decision log on Multi-Paxos
"""
ACCOUNTS = [f"acct-{i}" for i in range(6)]
START = 100


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root: Path = tmp_path_factory.mktemp("txn-paxos")
    spec = parse_spec(tomllib.loads(SPEC.replace("{data_dir}", str(root / "data"))))
    with LocalCluster.from_spec(spec, ready_timeout_s=60.0) as cluster:
        yield cluster


async def _wait_leader(db: Any, coords: list[str], *, exclude: str = "",
                       timeout_s: float = 30.0) -> str:
    """The coordinator replica a live replica names as its paxos leader (not ``exclude``:
    followers keep naming a dead leader until they notice it is gone)."""
    with trio.move_on_after(timeout_s):
        while True:
            for address in coords:
                try:
                    leader = (await db.status(address, timeout=1.0)).info.get("leader")
                except Exception:  # a killed or electing replica: ask the next
                    continue
                if leader and leader != exclude:
                    return str(leader)
            await trio.sleep(0.05)
    raise AssertionError(f"no coordinator leader within {timeout_s}s")


async def _balances(db: Any) -> dict[str, int]:
    out: dict[str, int] = {}

    async def read(txn: Any) -> None:
        out.clear()
        for a in ACCOUNTS:
            out[a] = await txn.get(a)

    await db.run(read)
    return out


async def test_cross_shard_commit_survives_coordinator_leader_kill(bank: LocalCluster) -> None:
    from giants.twopc.client import TxnClient

    eps = bank.service_endpoints("bank")
    coords, shards = eps["coordinator"], eps["participant"]
    assert len(coords) == 3 and len(shards) == 2
    for inst in bank.services[0].instances:
        assert inst.config["consensus"] == "paxos"

    async with TxnClient(coords, shards, commit_timeout_s=60.0) as db:
        leader = await _wait_leader(db, coords)

        # one transaction creating every account: it spans both shards
        txn = db.begin()
        for a in ACCOUNTS:
            await txn.put(a, START)
        assert len(txn.participants) == 2, txn.participants
        await txn.commit()
        assert await _balances(db) == {a: START for a in ACCOUNTS}

        async def transfer(src: str, dst: str, amount: int) -> None:
            async def body(t: Any) -> None:
                s, d = await t.get(src), await t.get(dst)
                await t.put(src, s - amount)
                await t.put(dst, d + amount)
            await db.run(body)

        for i in range(5):
            await transfer(ACCOUNTS[i], ACCOUNTS[i + 1], 7)

        # SIGKILL the paxos leader of the coordinator group
        await trio.to_thread.run_sync(bank.kill, leader)
        live = [c for i, c in enumerate(coords) if f"coord-{i}" != leader]
        assert len(live) == 2, (leader, coords)
        await _wait_leader(db, live, exclude=leader)

        for i in range(5):
            await transfer(ACCOUNTS[5 - i], ACCOUNTS[4 - i], 3)

        after = await _balances(db)
        assert sum(after.values()) == START * len(ACCOUNTS), after
        # each transfer applied exactly once, all-or-nothing
        want = {a: START for a in ACCOUNTS}
        for i in range(5):
            want[ACCOUNTS[i]] -= 7
            want[ACCOUNTS[i + 1]] += 7
        for i in range(5):
            want[ACCOUNTS[5 - i]] -= 3
            want[ACCOUNTS[4 - i]] += 3
        assert after == want

        await trio.to_thread.run_sync(bank.restart, leader)
        assert bank.reap() == []
