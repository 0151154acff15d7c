"""Integration: a ZooKeeper ensemble bound to the *paxos* consensus plugin by a TOML
cluster spec, on real processes, driven by the unmodified kazoo client (ZooKeeper paper
sections 2.2-2.3 and 4.1; Paxos Made Live for the log underneath).

The spec's ``consensus = "paxos"`` binding is all that swaps Raft for Multi-Paxos; the
ZooKeeper server and kazoo are unchanged. The test shows ephemeral and sequential nodes,
a watch firing, then SIGKILLs the leader and then the client's own server: writes resume
and the session (with its ephemeral node) survives.
"""

from __future__ import annotations

import socket
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from giants.core.cluster import parse_spec
from giants.core.launcher import LocalCluster

pytestmark = pytest.mark.real

SPEC = """
name = "zk-on-paxos"
base_port = 0
data_dir = "{data_dir}"

[services.coord]
system = "zookeeper"
nodes = 3
consensus = "paxos"     # a binding naming a plugin: the only change from a Raft ensemble
tick_ms = 200
"""

FAST_RETRY = {"max_tries": -1, "delay": 0.05, "max_delay": 0.5}


def _wait(pred: Callable[[], Any], what: str, timeout_s: float = 30.0) -> None:
    """Poll ``pred`` until true; exceptions count as "not yet" until the deadline."""
    end = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < end:
        try:
            if pred():
                return
        except Exception as exc:  # a server mid-failover may refuse; retry
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{what}: not reached within {timeout_s}s (last error: {last!r})")


def _srvr(address: str) -> str:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2.0) as s:
        s.sendall(b"srvr")
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode()


def _leader(addresses: list[str]) -> str:
    found: list[str] = []

    def probe() -> bool:
        for a in addresses:
            try:
                if "Mode: leader" in _srvr(a):
                    found.append(a)
                    return True
            except OSError:
                continue
        return False

    _wait(probe, "a ZooKeeper leader")
    return found[-1]


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root: Path = tmp_path_factory.mktemp("zk-paxos")
    spec = parse_spec(tomllib.loads(SPEC.replace("{data_dir}", str(root / "data"))))
    assert spec.services[0].bindings == {"consensus": "paxos"}
    with LocalCluster.from_spec(spec, ready_timeout_s=60.0) as cluster:
        yield cluster


def _name_of(cluster: LocalCluster, address: str) -> str:
    return f"zk-{cluster.service_endpoints('coord')['server'].index(address)}"


def _peer(zk: KazooClient) -> str:
    host, port = zk._connection._socket.getpeername()[:2]
    return f"{host}:{port}"


def test_kazoo_on_a_paxos_ensemble_survives_leader_and_server_kills(
        ensemble: LocalCluster) -> None:
    addrs = ensemble.service_endpoints("coord")["server"]
    assert len(addrs) == 3
    # the servers really run the paxos plugin (their planned config says so)
    for inst in ensemble.services[0].instances:
        assert inst.config["consensus"] == "paxos"
    _leader(addrs)
    zk = KazooClient(hosts=",".join(addrs), timeout=6.0, connection_retry=FAST_RETRY,
                     command_retry=FAST_RETRY)
    zk.start(timeout=20)
    try:
        session = zk.client_id
        zk.create("/app", b"")
        zk.create("/app/owner", b"me", ephemeral=True)
        seqs = [zk.create("/app/job-", b"", sequence=True) for _ in range(3)]
        assert [int(s[-10:]) for s in seqs] == sorted(int(s[-10:]) for s in seqs)
        assert len(set(seqs)) == 3

        fired = threading.Event()
        events: list[Any] = []

        def watcher(event: Any) -> None:
            events.append(event)
            fired.set()

        assert zk.get("/app/owner", watch=watcher)[0] == b"me"
        zk.set("/app/owner", b"me-too")
        assert fired.wait(10.0), "the data watch never fired"
        assert events[0].type == "CHANGED" and events[0].path == "/app/owner"

        # SIGKILL the leader: writes resume under a new one, the session lives on
        leader = _leader(addrs)
        ensemble.kill(_name_of(ensemble, leader))
        survivors = [a for a in addrs if a != leader]
        new_leader = _leader(survivors)
        assert new_leader != leader
        _wait(lambda: zk.state == KazooState.CONNECTED and zk.set("/app/owner", b"after-leader")
              is not None, "a write after the leader was killed")
        assert zk.client_id == session
        more = [zk.create("/app/job-", b"", sequence=True) for _ in range(2)]
        assert all(int(m[-10:]) > int(seqs[-1][-10:]) for m in more)

        # SIGKILL the client's own server; restart the old leader first so that two of
        # the three servers (a quorum) stay up
        ensemble.restart(_name_of(ensemble, leader))
        mine = _peer(zk)
        ensemble.kill(_name_of(ensemble, mine))
        _wait(lambda: zk.state == KazooState.CONNECTED and _peer(zk) != mine,
              "kazoo reconnecting to another server")
        assert zk.client_id == session
        zk.sync("/app")
        assert zk.get("/app/owner")[0] == b"after-leader"
        _wait(lambda: zk.set("/app/owner", b"after-own-server") is not None,
              "a write after the client's server was killed")
        children = zk.get_children("/app")
        assert "owner" in children and len([c for c in children if c.startswith("job-")]) == 5
        ensemble.restart(_name_of(ensemble, mine))
        # no server died on its own along the way (only the two we killed, restarted)
        assert ensemble.reap() == []
        assert all(ensemble.alive(f"zk-{i}") for i in range(3))
    finally:
        zk.stop()
        zk.close()

    # the ephemeral node dies with the session, as seen by a fresh client
    zk2 = KazooClient(hosts=",".join(addrs), timeout=6.0, connection_retry=FAST_RETRY)
    zk2.start(timeout=20)
    try:
        _wait(lambda: zk2.exists("/app/owner") is None, "the ephemeral node removed on close")
        assert len(zk2.get_children("/app")) == 5
    finally:
        zk2.stop()
        zk2.close()

