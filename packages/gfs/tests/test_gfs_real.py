"""Real multi-process tests: the GFS roles as OS processes on 127.0.0.1.

* SIGKILL a chunkserver in the middle of a large write: the write completes, the master
  re-replicates to the goal, fsck is clean; corrupt a block on disk by hand: reads
  still return the right bytes while the replica is reported and re-cloned (§5.2).
  The file is ``GIANTS_GFS_REAL_MB`` MB (default 200, the issue's size, in 1 MB chunks;
  about 25 s here; set it lower for a quick local run).
* Snapshot, master crash/restart, shadow reads, bad frames, and the CLI, all on real
  processes.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

import pytest
import trio

from giants.core.codec import DEFAULT_REGISTRY, MessageRegistry
from giants.core.envelope import ErrorReply
from giants.core.errors import GiantsError, RemoteProtocolError
from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions
from giants.core.transport import tcp
from giants.gfs._clientops import master_call
from giants.gfs._messages import GetChunks
from giants.gfs.client import GFSClient
from giants.gfs.demo import DEMO_OPTIONS, MB, pattern, real_kill_scenario

pytestmark = pytest.mark.real


@dataclass(frozen=True, slots=True)
class WrongCreate:
    path: int

SIZE_MB = int(os.environ.get("GIANTS_GFS_REAL_MB", "200"))


def _start(path):
    extra = dict(DEMO_OPTIONS, trace=False)
    return LocalCluster("gfs", UpOptions(4, 0, str(path), extra=extra), ready_timeout_s=60.0)


@pytest.fixture
def cluster(tmp_path):
    with _start(tmp_path) as c:
        yield c


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One cluster for the tests below that do not kill chunkservers (they use disjoint
    paths; the master-restart test runs last)."""
    with _start(tmp_path_factory.mktemp("gfs-shared")) as c:
        yield c


def endpoints(c):
    return c.endpoints["master"] + c.endpoints["shadow"]


async def test_kill_chunkserver_mid_write_rereplicate_and_repair_corruption(cluster, tmp_path):
    lines = []
    out = await real_kill_scenario(cluster, tmp_path, SIZE_MB * MB, say=lines.append)
    assert out["cs-1"] == "killed"
    report = out["repaired"]
    assert report.corrupt_reported >= 1
    assert not report.under_replicated and not report.missing
    assert set(report.chunkservers) == {"cs-0", "cs-2", "cs-3"}
    assert all(n == report.goal for n in report.replicas.values() if n)


async def test_bad_frames_and_requests_leave_the_master_serving(shared):
    cluster = shared
    host, port = cluster.endpoints["master"][0].rsplit(":", 1)
    for junk in (b"\x00\x00\x00\x05hello", struct.pack(">I", 1 << 31) + b"x",
                 b"\x00\x00\x00\x03\x93\x01\x02"):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(junk)
            s.settimeout(2)
            try:
                s.recv(100)
            except OSError:
                pass
    # A well-framed request whose fields have the wrong types (path as an int).
    reg = MessageRegistry()
    reg.register(DEFAULT_REGISTRY.tag_of(ErrorReply), ErrorReply)
    reg.register("gfs.create", WrongCreate)
    async with tcp.Client("typo", registry=reg) as raw:
        with pytest.raises(RemoteProtocolError):
            await raw.request(cluster.endpoints["master"][0], WrongCreate(12345), timeout=5)
    async with GFSClient(endpoints(cluster), timeout_s=5.0) as fs:
        from giants.gfs._messages import Data

        with pytest.raises(GiantsError):  # a chunkserver reply type sent to the master
            await fs._client.request(cluster.endpoints["master"][0], Data(b"", 0), timeout=5)
        with pytest.raises(GiantsError):
            await fs.create("bad path")
        await fs.create("/still/works")
        await fs.write("/still/works", 0, b"yes")
        assert await fs.read("/still/works", 0, 3) == b"yes"


def test_cli_commands(shared, tmp_path, capsysbinary):
    from giants.core.cli import main

    cluster = shared
    local = tmp_path / "in.bin"
    local.write_bytes(pattern(2 * MB + 5))
    eps = ",".join(endpoints(cluster))

    def gfs(*args):
        code = main(["gfs", "--endpoints", eps, *args])
        out = capsysbinary.readouterr()
        return code, out.out, out.err

    assert gfs("put", str(local), "/cli/in.bin")[0] == 0
    code, out, _ = gfs("cat", "/cli/in.bin")
    assert code == 0 and out == local.read_bytes()
    assert gfs("get", "/cli/in.bin", str(tmp_path / "out.bin"))[0] == 0
    assert (tmp_path / "out.bin").read_bytes() == local.read_bytes()
    assert b"2097157 bytes, 3 chunks" in gfs("stat", "/cli/in.bin")[1]
    assert gfs("append", "/cli/log", "hello")[1].strip() == b"0"
    assert gfs("mkdir", "/cli/sub")[0] == 0
    assert gfs("mv", "/cli/log", "/cli/sub/log")[0] == 0
    assert gfs("snapshot", "/cli", "/cli-snap")[0] == 0
    assert gfs("rm", "/cli/sub/log")[0] == 0
    assert gfs("ls", "/cli")[1].split(b"\n")[:2] == [b"- /cli/in.bin", b"d /cli/sub"]
    assert b"- /cli-snap/sub/log" in gfs("ls", "/cli-snap/sub")[1]
    # fsck is healthy once the master has brought every chunk back to its goal (the shared
    # cluster's other tests kill chunkservers; re-replication takes a few heartbeats)
    deadline = time.monotonic() + 60
    while True:
        code, out, _ = gfs("fsck")
        if (code == 0 and b"verdict: HEALTHY" in out) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 0 and b"verdict: HEALTHY" in out, out.decode(errors="replace")
    code, _, err = gfs("rm", "/nope")
    assert code == 1 and b"NotFound" in err


async def test_snapshot_master_restart_and_shadow_reads(shared):
    cluster = shared
    a = pattern(3 * MB + 123, seed=1)
    async with GFSClient(endpoints(cluster), timeout_s=5.0) as fs:
        await fs.create("/home/user/a")
        await fs.write("/home/user/a", 0, a)
        await fs.open("/home/user/log", create=True)
        offsets = [await fs.record_append("/home/user/log", b"rec-%d|" % i) for i in range(20)]
        await fs.snapshot("/home/user", "/save/user")
        await fs.write("/home/user/a", 5, b"CHANGED")
        assert await fs.read("/save/user/a", 0, len(a)) == a
        assert (await fs.read("/home/user/a", 0, 20))[5:12] == b"CHANGED"
        orig = await fs._run(master_call(fs.state, GetChunks("/home/user/a", 0, 10)))
        snap = await fs._run(master_call(fs.state, GetChunks("/save/user/a", 0, 10)))
        assert [c.handle for c in orig.chunks][1:] == [c.handle for c in snap.chunks][1:]
        assert orig.chunks[0].handle != snap.chunks[0].handle

        await trio.to_thread.run_sync(cluster.kill, "master")
        # The shadow master answers reads while the master is down (§5.1.3).
        assert await fs.read("/save/user/a", 0, len(a)) == a
        assert [i.path for i in await fs.list("/save/user")] == ["/save/user/a",
                                                                   "/save/user/log"]
        with pytest.raises(GiantsError):
            await fs.mkdir("/while-down")
        await trio.to_thread.run_sync(cluster.restart, "master")
        # Everything acknowledged survived the SIGKILL: recovered from checkpoint + log.
        log = await fs.read("/home/user/log", 0, 1 << 20)
        for i, off in enumerate(offsets):
            rec = b"rec-%d|" % i
            assert log[off:off + len(rec)] == rec
        assert {"/home", "/save"} <= {i.path for i in await fs.list("/")}
        await fs.write("/home/user/a", 0, b"after-restart")
        assert (await fs.read("/home/user/a", 0, 13)) == b"after-restart"
