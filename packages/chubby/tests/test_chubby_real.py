"""Real processes (Chubby §2.12 and bad input): five replicas on 127.0.0.1.

* Bad input -- garbage frames, a call with wrong field types, unknown operations, an
  oversized file, a write without permission -- gets a clear error and the cell keeps
  serving with nothing lost.
* Master fail-over: a client holding a lock, SIGKILL of the master -- the client keeps
  its session and its lock, the new master accepts its sequencer and refuses a rival,
  and the client sees the fail-over event.
"""

from __future__ import annotations

from collections.abc import Iterator

import msgpack
import pytest
import trio

from giants.chubby._messages import Call
from giants.chubby.client import ChubbyClient, ClientOptions
from giants.chubby.testing import find_master, start_cell
from giants.core.envelope import (
    Envelope,
    ErrorReply,
    FrameDecoder,
    decode_envelope,
    encode_envelope,
    frame,
)
from giants.core.errors import Rejected, Timeout
from giants.core.launcher import LocalCluster

pytestmark = pytest.mark.real

CELL = {"lease_s": 2.0, "keepalive_margin_s": 0.5, "lock_delay_s": 2.0}
CLIENT = ClientOptions(grace_s=20.0, attempt_s=0.5, op_timeout_s=30.0, resend_before_s=0.4)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cell(tmp_path_factory.mktemp("chubby-real"), 5, **CELL)
    try:
        yield c
    finally:
        c.stop()


async def _raw_exchange(address: str, payload: bytes) -> list[Envelope]:
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    out: list[Envelope] = []
    async with stream:
        await stream.send_all(frame(payload))
        decoder = FrameDecoder()
        with trio.move_on_after(3):
            while not out:
                data = await stream.receive_some(65536)
                if not data:
                    break
                out += [decode_envelope(f) for f in decoder.feed(data)]
    return out


async def test_bad_input_gets_clear_errors_and_loses_nothing(cluster: LocalCluster) -> None:
    endpoints = cluster.endpoints["replica"]
    master, _ = await find_master(endpoints)
    address = endpoints[int(master.rsplit("-", 1)[1])]
    async with ChubbyClient(endpoints, user="alice", options=CLIENT) as c:
        h = await c.open("/ls/cell/precious", "rw", create="file")
        await c.write(h, b"keep me")
        # garbage bytes, then an envelope whose Call has a string where an int belongs
        assert await _raw_exchange(address, b"\xc1not msgpack") == []
        good = encode_envelope(Envelope("raw", master, 1, None, Call(c.session, 1, 0, "read", [h])))
        parts = msgpack.unpackb(good, raw=False)
        parts[4][1] = "not-a-session"
        replies = await _raw_exchange(address, msgpack.packb(parts, use_bin_type=True))
        assert len(replies) == 1 and isinstance(replies[0].body, ErrorReply)
        assert replies[0].body.kind == "protocol"
        for op, args in [("frobnicate", []), ("write", [h, b"x" * (300 * 1024), -1]),
                         ("open", ["/not/ls", "r", "", [], None])]:
            with pytest.raises(Rejected):
                await c._call(op, args)
        async with ChubbyClient(endpoints, user="mallory", options=CLIENT) as m:
            await m.open("/ls/cell/acl", "r", create="dir")
            owners = await c.open("/ls/cell/acl/owners", "rw", create="file")
            await c.write(owners, b"alice")
            g = await c.open("/ls/cell/guarded", "rw", create="file", acls=["", "owners", "owners"])
            await c.write(g, b"alice's")
            mg = await m.open("/ls/cell/guarded", "r")
            with pytest.raises(Rejected) as e:
                await m._call("write", [mg, b"mallory's", -1])
            assert e.value.detail["reason"] == "permission"
        data, _ = await c.read(h)
        assert data == b"keep me"
        assert (await c.read(g))[0] == b"alice's"


async def test_session_and_lock_survive_master_sigkill(cluster: LocalCluster) -> None:
    endpoints = cluster.endpoints["replica"]
    master, epoch = await find_master(endpoints)
    async with ChubbyClient(endpoints, user="holder", options=CLIENT) as holder:
        session = holder.session
        h = await holder.open("/ls/cell/leader", "rwl", create="file")
        seq = await holder.acquire(h)
        await holder.write(h, b"holder")
        await trio.to_thread.run_sync(cluster.kill, master)
        seen = []
        with trio.fail_after(30):
            async for ev in holder.events():
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


async def test_lock_service_capability(cluster: LocalCluster) -> None:
    """The registry's ``lock_service`` "chubby": fencing tokens, files, watch, election."""
    from giants.core.interfaces import LockService
    from giants.core.plugins import load_registry

    factory = load_registry().lock_service("chubby")
    endpoints = cluster.endpoints["replica"]
    opts = {"grace_s": 20.0, "attempt_s": 0.5, "op_timeout_s": 30.0}
    async with factory(endpoints, user="a", **opts) as a, factory(endpoints, user="b", **opts) as b:
        assert isinstance(a, LockService)
        assert await a.read("svc/config") is None
        await a.write("svc/config", b"v1")
        assert await b.read("svc/config") == b"v1"
        async with a.leadership("svc/leader", "node-a") as token:
            assert await b.leader("svc/leader") == "node-a"
            assert await b.check_sequencer(token)
            with pytest.raises(Timeout):
                await b.acquire("svc/leader", timeout_s=0.5)
        token_b = await b.acquire("svc/leader", timeout_s=10)
        assert token_b.generation > token.generation and not await a.check_sequencer(token)
        async with trio.open_nursery() as nursery:
            changed = trio.Event()

            async def watcher() -> None:
                await b.watch("svc/config")
                changed.set()

            nursery.start_soon(watcher)
            await trio.sleep(0.2)
            await a.write("svc/config", b"v2")
            with trio.fail_after(10):
                await changed.wait()
        await b.release("svc/leader")


def test_shell_commands(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    """``giants chubby write|cat|ls`` against the cell; a bad path exits 1 with the error."""
    from giants.core.cli import main

    monkeypatch.setenv("GIANTS_ENDPOINTS", ",".join(cluster.endpoints["replica"]))
    assert main(["chubby", "write", "/ls/cell/sh/greeting", "hi there", "--mkdirs"]) == 0
    assert main(["chubby", "cat", "/ls/cell/sh/greeting"]) == 0
    assert main(["chubby", "ls", "/ls/cell/sh"]) == 0
    out = capsys.readouterr().out
    assert "hi there" in out and "greeting" in out
    assert main(["chubby", "cat", "/etc/passwd"]) == 1
    assert "invalid path" in capsys.readouterr().out
