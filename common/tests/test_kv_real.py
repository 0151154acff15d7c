"""The core's replicated KV (solo consensus) as a real process: SIGKILL it mid-workload,
restart it on the same data dir, and every acknowledged write is still there."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import trio

from giants.core.errors import GiantsError
from giants.core.kvclient import KVClient
from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions


@pytest.mark.real
def test_sigkill_and_restart_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    cluster = LocalCluster("kv", UpOptions(1, 0, str(tmp_path)), log=io.StringIO())
    acked: dict[str, int] = {}
    with cluster:
        endpoints = cluster.endpoints["node"]

        async def writes_then_kill() -> None:
            async with KVClient(endpoints, op_timeout_s=2.0) as kv:
                async with trio.open_nursery() as nursery:
                    async def writer(w: int) -> None:
                        i = 0
                        while True:
                            i += 1
                            try:
                                await kv.put(f"w{w}", i)
                            except GiantsError:
                                return
                            acked[f"w{w}"] = i
                    for w in range(4):
                        nursery.start_soon(writer, w)
                    await trio.sleep(0.7)
                    await trio.to_thread.run_sync(cluster.kill, "node-0")

        trio.run(writes_then_kill)
        assert acked and all(v > 0 for v in acked.values())
        cluster.restart("node-0")

        async def read_back() -> dict[str, int]:
            async with KVClient(endpoints) as kv:
                return {k: await kv.get(k) for k in acked}

        after = trio.run(read_back)
    # the last acknowledged value, or a later one whose ack was lost with the process
    assert all(after[k] >= v for k, v in acked.items()), (acked, after)
    assert all(after[k] <= v + 1 for k, v in acked.items()), (acked, after)
