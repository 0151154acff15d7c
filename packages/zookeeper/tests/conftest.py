"""Fixtures for the ZooKeeper tests: a real 3-server ensemble (OS processes on
127.0.0.1, started through the launcher as ``giants up zookeeper`` does)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from giants.core.launcher import LocalCluster
from giants.zookeeper.testing import leader_of, start_ensemble


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
    from kazoo.client import KazooClient

    root = f"/t{uuid.uuid4().hex[:12]}"
    admin = KazooClient(hosts=hosts)
    admin.start(timeout=15)
    admin.ensure_path(root)
    admin.stop()
    admin.close()
    yield hosts + root


@pytest.fixture
def zk(chroot_hosts: str) -> Iterator[Any]:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=chroot_hosts)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()
