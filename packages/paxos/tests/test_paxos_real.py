"""Real processes: ``giants up paxos --nodes 3`` as three OS processes on 127.0.0.1;
SIGKILL the leader under client load; progress resumes under a new leader and every
acknowledged write is read back (and the whole client history is linearizable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from giants.paxos.demo import kill_leader_under_load


@pytest.mark.real
def test_kill_the_leader_under_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    report = kill_leader_under_load("paxos", str(tmp_path / "data"), clients=3,
                                    before_s=1.0, after_s=2.0, say=lambda _s: None)
    assert report.ok_before > 0, "no progress before the kill"
    assert report.new_leader not in (None, report.killed), report
    assert report.ok_after > 0, f"no progress after killing {report.killed}"
    assert report.lost_writes == [], report.lost_writes
    assert report.linearizable, report.explain


@pytest.mark.real
def test_bad_frames_and_messages_are_refused_and_the_cluster_keeps_serving(tmp_path: Path) -> None:
    import os

    import trio

    from giants.core.kvclient import KVClient
    from giants.core.launcher import LocalCluster
    from giants.core.plugins import UpOptions
    from giants.core.transport import tcp
    from giants.paxos._messages import Accept, Prepare

    async def main(cluster: LocalCluster) -> None:
        endpoints = cluster.endpoints["node"]
        async with KVClient(endpoints) as kv:
            await kv.put("a", 1)
            leader = await kv.leader()
            assert leader is not None
            host, port = leader.rsplit(":", 1)
            for junk in (b"\x00\x00\x00\x05hello", b"\xff\xff\xff\xff", b"\x00\x00\x00\x02\x91\xa1"):
                stream = await trio.open_tcp_stream(host, int(port))
                await stream.send_all(junk)
                await stream.aclose()
            async with tcp.Client("mallory") as evil:
                await evil.send(leader, Prepare((99, "mallory"), 1))       # unknown sender
                await evil.send(leader, Accept((98, "mallory"), [(1, "cmd", b"x")], 5, 1))
            assert await kv.leader() == leader  # nobody was deposed
            await kv.put("a", 2)
            assert await kv.get("a") == 2

    with open(os.devnull, "w") as quiet, \
            LocalCluster("paxos", UpOptions(3, 0, str(tmp_path / "data")), log=quiet) as cluster:
        trio.run(main, cluster)
        logs = "\n".join(cluster.log_tail(f"node-{i}", 200) for i in range(3))
        assert "rejected Prepare from mallory: unknown sender" in logs
        assert all(cluster.alive(f"node-{i}") for i in range(3))
