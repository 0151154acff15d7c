"""Real processes: kill a participant mid-commit, restart it, same outcome everywhere.

The coordinator and three shards run as OS processes on 127.0.0.1 (``LocalCluster``).
A transaction writes one key on shard-1 and one on shard-2. shard-2 is paused
(SIGSTOP) so the commit stalls in phase 1 with shard-1 already PREPARED; shard-1 is
then SIGKILLed, shard-2 resumed. Once shard-1 is restarted on its data directory, the
transaction must have the same outcome at both shards (read back through a new
transaction, and from each shard's durable outcome records after the cluster stops),
and no shard may be left in doubt.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from giants.core.errors import GiantsError, TxnAborted
from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions
from giants.core.storage import DataDir, SqlDurableStore
from giants.twopc import shard_for, shard_names
from giants.twopc.client import TxnClient

pytestmark = pytest.mark.real


def _key_on(shard: str, shards: list[str], prefix: str) -> str:
    return next(f"{prefix}{i}" for i in range(1000) if shard_for(f"{prefix}{i}", shards) == shard)


async def _poll(what: str, fn: Any, deadline_s: float = 60.0) -> Any:
    with trio.move_on_after(deadline_s):
        while True:
            try:
                value = await fn()
            except GiantsError:
                value = None
            if value:
                return value
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _outcomes(data_dir: str) -> dict[str, Any]:
    store = SqlDurableStore(DataDir(data_dir).sqlite_url)
    try:
        durable = await store.load()
    finally:
        await store.close()
    return {str(t): v[0] for t, v in durable.items("2pc.done")}


async def test_kill_participant_mid_commit_same_outcome_everywhere(tmp_path: Path) -> None:
    opts = UpOptions(None, 0, str(tmp_path / "data"), extra={"shards": 3})
    shards = shard_names(3)
    k1, k2 = _key_on("shard-1", shards, "x"), _key_on("shard-2", shards, "y")
    with LocalCluster("2pc", opts, log=open(os.devnull, "w"), ready_timeout_s=120.0) as cluster:
        eps = cluster.endpoints
        coords, shard_eps = eps["coordinator"], eps["participant"]
        pids = cluster.pids
        async with TxnClient(coords, shard_eps, commit_timeout_s=60.0) as db:
            async with db.transaction() as setup:
                await setup.put(k1, "old")
                await setup.put(k2, "old")
            txn = db.begin()
            await txn.put(k1, "new")
            await txn.put(k2, "new")
            os.kill(pids["shard-2"], signal.SIGSTOP)
            outcome: dict[str, Any] = {}

            async def commit() -> None:
                try:
                    await txn.commit()
                    outcome["committed"] = True
                except TxnAborted:
                    outcome["committed"] = False

            async with trio.open_nursery() as nursery:
                nursery.start_soon(commit)

                async def prepared_at_shard1() -> bool:
                    st = await db.status(shard_eps[1])
                    return st.txns.get(txn.txn, {}).get("state") == "prepared"

                await _poll("shard-1 to prepare", prepared_at_shard1)
                await trio.to_thread.run_sync(cluster.kill, "shard-1")      # mid-commit
                os.kill(pids["shard-2"], signal.SIGCONT)
                await trio.sleep(0.5)
                await trio.to_thread.run_sync(cluster.restart, "shard-1")
            assert "committed" in outcome

            async def settled() -> bool:
                for address in coords + shard_eps:
                    if (await db.status(address)).txns:
                        return False
                return True

            await _poll("every node to settle", settled)
            async with db.transaction() as check:
                seen = (await check.get(k1), await check.get(k2))
            want = "new" if outcome["committed"] else "old"
            assert seen == (want, want), (outcome, seen)
    per_shard = {s: await _outcomes(str(tmp_path / "data" / s)) for s in ("shard-1", "shard-2")}
    assert per_shard["shard-1"][txn.txn] == per_shard["shard-2"][txn.txn] == outcome["committed"]
