"""Fixtures for the ZooKeeper tests: a real 3-server ensemble (OS processes on
127.0.0.1, started through the launcher as ``giants up zookeeper`` does)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions

# ZooKeeper's tickTime for the test ensembles: sessions may time out in [0.4 s, 4 s].
TEST_TICK_MS = 200


def start_ensemble(data_dir: Path, nodes: int = 3) -> LocalCluster:
    cluster = LocalCluster("zookeeper", UpOptions(nodes, 0, str(data_dir),
                                                  extra={"tick_ms": TEST_TICK_MS}))
    cluster.start()
    return cluster


def four_letter(address: str, word: bytes, timeout: float = 2.0) -> str:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(word)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode()


def leader_of(addresses: list[str], deadline_s: float = 20.0) -> str:
    """The client address of the server that says it leads (polls with a deadline)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        for a in addresses:
            try:
                if "Mode: leader" in four_letter(a, b"srvr"):
                    return a
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError("no leader within the deadline")


@pytest.fixture(scope="session")
def ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_ensemble(tmp_path_factory.mktemp("zk-ensemble"))
    try:
        leader_of(cluster.endpoints["server"])
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def hosts(ensemble: LocalCluster) -> str:
    return ",".join(ensemble.endpoints["server"])


@pytest.fixture
def chroot_hosts(hosts: str) -> Iterator[str]:
    """Hosts with a fresh chroot, so tests sharing the ensemble never see each other."""
    import uuid

    from kazoo.client import KazooClient

    root = f"/t{uuid.uuid4().hex[:12]}"
    admin = KazooClient(hosts=hosts)
    admin.start(timeout=15)
    admin.ensure_path(root)
    admin.stop()
    admin.close()
    yield hosts + root


@pytest.fixture
def zk(chroot_hosts: str) -> Iterator[object]:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=chroot_hosts)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()
