"""kazoo, unchanged, against a real 3-server ensemble: CRUD with versions, ephemeral and
sequential nodes, data and child watches, multi, sync, auth and ACLs (ZooKeeper paper
section 2: the API, the guarantees of section 2.3)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
)
from kazoo.protocol.states import EventType
from kazoo.security import make_digest_acl

pytestmark = pytest.mark.real


def test_crud_with_versions(zk: Any) -> None:
    zk.create("/node", b"v0")
    data, stat = zk.get("/node")
    assert data == b"v0" and stat.version == 0 and stat.ephemeralOwner == 0
    with pytest.raises(NodeExistsError):
        zk.create("/node", b"again")
    stat = zk.set("/node", b"v1", version=0)
    assert stat.version == 1
    with pytest.raises(BadVersionError):
        zk.set("/node", b"v2", version=0)
    zk.create("/node/child", b"")
    with pytest.raises(NotEmptyError):
        zk.delete("/node")
    with pytest.raises(BadVersionError):
        zk.delete("/node/child", version=3)
    zk.delete("/node/child", version=0)
    assert zk.get_children("/node") == []
    children, stat = zk.get_children("/node", include_data=True)
    assert children == [] and stat.cversion == 2 and stat.numChildren == 0
    zk.delete("/node")
    assert zk.exists("/node") is None
    with pytest.raises(NoNodeError):
        zk.get("/node")
    path, stat = zk.create("/with-stat", b"abc", include_data=True)
    assert path == "/with-stat" and stat.dataLength == 3 and stat.czxid == stat.mzxid
    with pytest.raises(NoNodeError):
        zk.create("/missing/parent", b"")


def test_zxids_increase_and_reads_see_own_writes(zk: Any) -> None:
    zk.create("/z", b"0")
    last = zk.exists("/z").mzxid
    for i in range(1, 20):
        stat = zk.set("/z", str(i).encode())
        assert stat.mzxid > last
        last = stat.mzxid
        assert zk.get("/z")[0] == str(i).encode()  # FIFO client order: read after write


def test_ephemeral_and_sequential(zk: Any, chroot_hosts: str) -> None:
    other = KazooClient(hosts=chroot_hosts)
    other.start(timeout=15)
    try:
        other.create("/eph", b"x", ephemeral=True)
        zk.sync("/")  # reads are served locally and may lag: sync makes the next one current
        assert zk.exists("/eph").ephemeralOwner == other.client_id[0]
        with pytest.raises(NoChildrenForEphemeralsError):
            other.create("/eph/child")
        seqs = [zk.create("/seq/n-", b"", sequence=True, makepath=True) for _ in range(3)]
        assert seqs == [f"/seq/n-{i:010d}" for i in range(3)]
        eph_seq = other.create("/seq/e-", b"", sequence=True, ephemeral=True)
        assert eph_seq == "/seq/e-0000000003"
    finally:
        other.stop()
        other.close()
    zk.sync("/")
    assert zk.exists("/eph") is None
    assert sorted(zk.get_children("/seq")) == [f"n-{i:010d}" for i in range(3)]


def test_data_and_child_watches_fire_once_in_order(zk: Any) -> None:
    events: list[Any] = []
    got = threading.Event()

    def watcher(ev: Any) -> None:
        events.append((ev.type, ev.path))
        got.set()

    assert zk.exists("/w", watch=watcher) is None
    zk.create("/w", b"a")
    assert got.wait(10)
    got.clear()
    zk.get("/w", watch=watcher)
    zk.get_children("/w", watch=watcher)
    zk.set("/w", b"b")
    assert got.wait(10)
    got.clear()
    zk.set("/w", b"c")  # data watch was one-shot: no second event
    zk.create("/w/kid", b"")
    assert got.wait(10)
    got.clear()
    zk.get_children("/w", watch=watcher)
    zk.delete("/w/kid")
    assert got.wait(10)
    zk.sync("/")
    assert events == [(EventType.CREATED, "/w"), (EventType.CHANGED, "/w"),
                      (EventType.CHILD, "/w"), (EventType.CHILD, "/w")]


def test_datawatch_and_childrenwatch_recipes(zk: Any) -> None:
    seen_data: list[Any] = []
    seen_kids: list[list[str]] = []
    zk.ensure_path("/dw")
    zk.DataWatch("/dw", lambda data, stat: seen_data.append(data))
    zk.ChildrenWatch("/dw", lambda kids: seen_kids.append(sorted(kids)))
    zk.set("/dw", b"one")
    zk.create("/dw/a")
    zk.create("/dw/b")
    deadline = threading.Event()
    for _ in range(100):
        if seen_data[-1:] == [b"one"] and seen_kids[-1:] == [["a", "b"]]:
            break
        deadline.wait(0.05)
    assert seen_data[-1] == b"one" and seen_kids[-1] == ["a", "b"]


def test_transactions_commit_or_roll_back(zk: Any) -> None:
    zk.create("/tx", b"0")
    t = zk.transaction()
    t.create("/tx/a", b"1")
    t.set_data("/tx", b"2", version=0)
    t.check("/tx", version=1)
    t.delete("/tx/a")
    results = t.commit()
    assert results[0] == "/tx/a" and results[1].version == 1 and results[2:] == [True, True]
    assert zk.get("/tx")[0] == b"2"
    bad = zk.transaction()
    bad.create("/tx/b", b"")
    bad.delete("/tx/none")
    bad.create("/tx/c", b"")
    results = bad.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], NoNodeError)
    assert zk.exists("/tx/b") is None and zk.exists("/tx/c") is None


def test_digest_auth_and_acls(zk: Any, chroot_hosts: str) -> None:
    acl = make_digest_acl("alice", "secret", all=True)
    zk.add_auth("digest", "alice:secret")
    zk.create("/private", b"mine", acl=[acl])
    assert zk.get("/private")[0] == b"mine"
    assert zk.get_acls("/private")[0][0].id.id == acl.id.id
    stranger = KazooClient(hosts=chroot_hosts)
    stranger.start(timeout=15)
    try:
        stranger.sync("/")
        with pytest.raises(NoAuthError):
            stranger.get("/private")
        with pytest.raises(NoAuthError):
            stranger.set("/private", b"theirs")
        stranger.add_auth("digest", "alice:secret")
        assert stranger.get("/private")[0] == b"mine"
    finally:
        stranger.stop()
        stranger.close()
