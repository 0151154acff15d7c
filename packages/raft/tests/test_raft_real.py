"""Raft KV as real processes on 127.0.0.1 (``giants up raft --nodes 3`` via LocalCluster).

Bad input first (garbage frames, an oversized length prefix, a malformed command, an
oversized value): clear errors, the node keeps serving. Then clients write
continuously, the leader is SIGKILLed, a new leader must be reported within 2 s (default
timeouts), every acknowledged write is readable afterwards, and the killed node rejoins:
restarted on its data dir, it catches up and can take over leadership (TimeoutNow) and
serve every key itself.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
import trio

from giants.core.errors import GiantsError, Rejected
from giants.core.kv import MAX_VALUE_BYTES
from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions
from giants.core.rsm import LeaderInfo, MembershipChange, MembershipResult, WhoIsLeader
from giants.core.transport import tcp
from giants.raft import KVClient

FAILOVER_DEADLINE_S = 2.0


async def leader_seen_by(client: tcp.Client, address: str) -> str | None:
    try:
        info = await client.request(address, WhoIsLeader(), timeout=0.5)
    except GiantsError:
        return None
    return info.leader if isinstance(info, LeaderInfo) else None


async def bad_input(endpoints: list[str]) -> None:
    host, port = endpoints[0].rsplit(":", 1)
    for junk in (struct.pack(">I", 7) + b"\xc1garbag",              # undecodable frame
                 struct.pack(">I", 2**31) + b"x"):                   # announces 2 GiB
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(junk)
        with trio.move_on_after(2.0):
            while await stream.receive_some(4096):
                pass
        await stream.aclose()
    async with KVClient(endpoints, op_timeout_s=10.0) as kv:
        with pytest.raises(Rejected):
            await kv._command(["frobnicate", "k"])
        with pytest.raises(Rejected):
            await kv.put("big", "x" * (MAX_VALUE_BYTES + 1))
        await kv.put("still", "serving")
        assert await kv.get("still") == "serving"
        assert await kv.get("big") is None


@pytest.mark.real
def test_sigkill_leader_failover_acked_writes_and_rejoin(tmp_path: Path) -> None:
    cluster = LocalCluster("raft", UpOptions(3, 0, str(tmp_path)), log=io.StringIO())
    acked: dict[str, int] = {}
    with cluster:
        endpoints = cluster.endpoints["node"]
        names = [f"node-{i}" for i in range(len(endpoints))]
        trio.run(bad_input, endpoints)

        async def write_kill_failover() -> tuple[str, float]:
            async with KVClient(endpoints, op_timeout_s=10.0) as kv, \
                    tcp.Client("observer") as obs, trio.open_nursery() as nursery:
                stop = trio.Event()

                async def writer(w: int) -> None:
                    i = 0
                    while not stop.is_set():
                        i += 1
                        try:
                            await kv.put(f"w{w}", i)
                        except GiantsError:
                            i -= 1
                            continue
                        acked[f"w{w}"] = i

                for w in range(4):
                    nursery.start_soon(writer, w)
                await trio.sleep(1.0)
                leader = await leader_seen_by(obs, endpoints[0])
                assert leader in names, leader
                await trio.to_thread.run_sync(cluster.kill, leader)
                killed_at = trio.current_time()
                survivors = [e for n, e in zip(names, endpoints, strict=True) if n != leader]
                new = None
                while trio.current_time() - killed_at < 10.0:
                    views = [await leader_seen_by(obs, e) for e in survivors]
                    if views[0] is not None and views[0] != leader and len(set(views)) == 1:
                        new = views[0]
                        break
                    await trio.sleep(0.01)
                elapsed = trio.current_time() - killed_at
                assert new is not None, "no new leader after the kill"
                before = dict(acked)
                deadline = trio.current_time() + 5.0
                while any(acked.get(k, 0) <= v for k, v in before.items()):
                    assert trio.current_time() < deadline, "writes did not resume"
                    await trio.sleep(0.01)
                stop.set()
                return leader, elapsed

        victim, failover_s = trio.run(write_kill_failover)
        assert failover_s < FAILOVER_DEADLINE_S, f"new leader after {failover_s:.2f}s"
        cluster.restart(victim)
        victim_addr = endpoints[names.index(victim)]

        async def rejoin_and_read() -> dict[str, int]:
            async with tcp.Client("admin") as admin, KVClient(endpoints) as kv:
                deadline = trio.current_time() + 20.0
                while True:
                    assert trio.current_time() < deadline, f"{victim} never took over"
                    lead = await leader_seen_by(admin, endpoints[0])
                    if lead == victim and await leader_seen_by(admin, victim_addr) == victim:
                        break
                    if lead in names:
                        try:
                            reply = await admin.request(
                                endpoints[names.index(lead)],
                                MembershipChange("transfer_leader", victim, None), timeout=1.0)
                            assert isinstance(reply, MembershipResult)
                        except GiantsError:
                            pass
                    await trio.sleep(0.1)
                # the rejoined node leads: these reads are served from its state machine
                return {k: await kv.get(k) for k in acked}

        after = trio.run(rejoin_and_read)
    assert acked and all(v > 0 for v in acked.values())
    # the last acknowledged value, or one later put whose ack was lost in the failover
    for key, value in acked.items():
        assert after[key] is not None and value <= after[key] <= value + 1, (key, value, after)
