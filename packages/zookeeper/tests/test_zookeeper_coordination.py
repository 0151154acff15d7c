"""The coordination capability (paper section 2.4 recipes) through the plugin registry,
with the trio client, against the real ensemble; and the ``giants zookeeper`` shell."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio

from giants.core.cli import main as cli_main
from giants.core.launcher import LocalCluster
from giants.core.plugins import load_registry
from giants.zookeeper._jute import Err
from giants.zookeeper.client import SessionExpired, ZkClient, ZkError

pytestmark = pytest.mark.real


async def test_lock_election_watch_and_small_files(ensemble: LocalCluster) -> None:
    endpoints = ensemble.endpoints["server"]
    factory = load_registry().get("coordination", "zookeeper")
    assert "zookeeper" not in load_registry().names("lock_service")  # not the LockService API
    name = uuid.uuid4().hex[:8]
    order: list[str] = []
    async with factory(endpoints) as c1, factory(endpoints[1:]) as c2:
        async def hold(coord: Any, who: str) -> None:
            async with coord.lock(name):
                order.append(f"{who}+")
                await trio.sleep(0.05)
                order.append(f"{who}-")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold, c1, "a")
            nursery.start_soon(hold, c2, "b")
        assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])

        async with c1.leadership(name, "node-1"):
            assert await c2.leader(name) == "node-1"
        assert await c2.leader(name) is None

        path = f"/files/{name}"
        assert await c1.write(path, b"v0") == 0
        assert await c2.read(path) == (b"v0", 0)
        with pytest.raises(ZkError) as info:
            await c2.write(path, b"v1", version=5)
        assert info.value.err == Err.BAD_VERSION

        async def change() -> None:
            await trio.sleep(0.1)
            await c2.write(path, b"v1", version=0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(change)
            with trio.fail_after(10):
                await c1.watch(path)
        assert (await c1.read(path))[0] == b"v1"


async def test_client_reports_expired_session(ensemble: LocalCluster) -> None:
    endpoints = ensemble.endpoints["server"]
    async with ZkClient(endpoints) as zk:
        sid, passwd = zk.session_id, zk.passwd
    stale = ZkClient(endpoints)
    stale.session_id, stale.passwd = sid, passwd  # closed above: the ensemble forgot it
    with pytest.raises(SessionExpired):
        async with stale:
            pass


def test_giants_zookeeper_shell(ensemble: LocalCluster, capsys: Any) -> None:
    eps = ",".join(ensemble.endpoints["server"])
    path = f"/shell-{uuid.uuid4().hex[:8]}"

    def giants(*args: str) -> str:
        assert cli_main(["zookeeper", "--endpoints", eps, *args]) == 0
        return str(capsys.readouterr().out)

    assert f"Created {path}" in giants("create", path, "hello")
    assert giants("get", path).strip() == "hello"
    assert "version = 1" in giants("set", path, "world")
    assert "data_length = 5" in giants("stat", path)
    assert path[1:] in giants("ls", "/")
    assert f"Deleted {path}" in giants("delete", path)
    assert "does not exist" in giants("stat", path)
