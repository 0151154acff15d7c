"""Master fail-over on real processes (Chubby §2.12): five replicas, a client holding a
lock, SIGKILL of the master -- the client keeps its session and its lock, the new
master accepts its sequencer and refuses the lock to anyone else, and the client sees
the fail-over event."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from giants.chubby.client import ChubbyClient, ClientOptions
from giants.chubby.testing import find_master, start_cell

pytestmark = pytest.mark.real

CELL = {"lease_s": 2.0, "keepalive_margin_s": 0.5, "lock_delay_s": 2.0}
CLIENT = ClientOptions(grace_s=20.0, attempt_s=0.5, op_timeout_s=30.0, resend_before_s=0.4)


async def test_session_and_lock_survive_master_sigkill(tmp_path: Path) -> None:
    cluster = await trio.to_thread.run_sync(lambda: start_cell(tmp_path, 5, **CELL))
    try:
        endpoints = cluster.endpoints["replica"]
        master, epoch = await find_master(endpoints)
        async with ChubbyClient(endpoints, user="holder", options=CLIENT) as holder:
            session = holder.session
            h = await holder.open("/ls/cell/leader", "rwl", create="file")
            seq = await holder.acquire(h)
            await holder.write(h, b"holder")
            await trio.to_thread.run_sync(cluster.kill, master)
            states = holder.events()
            with trio.fail_after(30):
                seen = []
                async for ev in states:
                    seen.append(ev[0])
                    if ev[0] == "failover":
                        break
            new_master, new_epoch = await find_master(endpoints)
            assert new_master != master and new_epoch > epoch
            assert holder.session == session and holder.state == "safe"
            assert "expired" not in seen
            assert await holder.check_sequencer(seq)
            data, _ = await holder.read(h)
            assert data == b"holder"
            async with ChubbyClient(endpoints, user="rival", options=CLIENT) as rival:
                rh = await rival.open("/ls/cell/leader", "l")
                assert await rival.try_acquire(rh) is None
            await holder.release(h)
            assert not await holder.check_sequencer(seq)
    finally:
        await trio.to_thread.run_sync(cluster.stop)
