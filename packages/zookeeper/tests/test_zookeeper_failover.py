"""Fail-over with kazoo on real processes (ZooKeeper paper sections 2.3 and 4.1):
SIGKILL the server a client is connected to -- the client moves to another server with
the same session and its ephemeral node; SIGKILL the leader -- writes resume under a new
one; SIGKILL every server -- a restart recovers the tree and the session table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from giants.core.launcher import LocalCluster
from giants.zookeeper.testing import leader_of, start_ensemble, wait_until

pytestmark = pytest.mark.real

# kazoo backs off up to a minute between reconnects by default; a test wants it prompt.
FAST_RETRY = {"max_tries": -1, "delay": 0.05, "max_delay": 0.5}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One ensemble for this module: each test leaves all three servers running."""
    c = start_ensemble(tmp_path_factory.mktemp("zk-failover"))
    try:
        leader_of(c.endpoints["server"])
        yield c
    finally:
        c.stop()


def _name_of(cluster: LocalCluster, address: str) -> str:
    return f"zk-{cluster.endpoints['server'].index(address)}"


def _connected_to(zk: Any) -> str:
    host, port = zk._connection._socket.getpeername()[:2]
    return f"{host}:{port}"


def test_session_survives_server_and_leader_failure(cluster: LocalCluster) -> None:
    addrs = cluster.endpoints["server"]
    zk = KazooClient(hosts=",".join(addrs), timeout=4.0, connection_retry=FAST_RETRY)
    zk.start(timeout=15)
    try:
        session = zk.client_id
        zk.create("/owner", b"me", ephemeral=True)
        zk.create("/data", b"0")
        first = _connected_to(zk)
        cluster.kill(_name_of(cluster, first))
        wait_until(lambda: zk.state == KazooState.CONNECTED and _connected_to(zk) != first)
        assert zk.client_id == session
        zk.sync("/")
        assert zk.get("/owner")[0] == b"me"
        zk.set("/data", b"1")
        cluster.restart(_name_of(cluster, first))

        leader = leader_of(addrs)
        cluster.kill(_name_of(cluster, leader))
        wait_until(lambda: zk.set("/data", b"2") is not None)
        assert zk.client_id == session and zk.state == KazooState.CONNECTED
        zk.sync("/")
        assert zk.get("/data")[0] == b"2" and zk.exists("/owner") is not None
        cluster.restart(_name_of(cluster, leader))
    finally:
        zk.stop()
        zk.close()


def test_restart_of_every_server_recovers_tree_and_sessions(cluster: LocalCluster) -> None:
    addrs = cluster.endpoints["server"]
    zk = KazooClient(hosts=",".join(addrs), timeout=4.0, connection_retry=FAST_RETRY)
    zk.start(timeout=15)
    try:
        for i in range(30):
            zk.create(f"/k{i}", str(i).encode())
        zk.create("/mine", b"", ephemeral=True)
        session = zk.client_id
        for name in ("zk-0", "zk-1", "zk-2"):
            cluster.kill(name)
        for name in ("zk-0", "zk-1", "zk-2"):
            cluster.restart(name)
        wait_until(lambda: zk.state == KazooState.CONNECTED and zk.exists("/k29") is not None)
        assert zk.client_id == session
        zk.sync("/")
        assert [zk.get(f"/k{i}")[0] for i in range(30)] == [str(i).encode() for i in range(30)]
        assert zk.exists("/mine") is not None
    finally:
        zk.stop()
        zk.close()
