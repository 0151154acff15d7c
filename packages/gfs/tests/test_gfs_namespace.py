"""Namespace, locks and the operation log's records (GFS paper §4.1, §2.6.3, §4.4)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from giants.core.errors import NotFound, Rejected
from giants.gfs._metadata import Metadata
from giants.gfs._namespace import HIDDEN_DIR, LockTable, Namespace, ancestors, check_path


@pytest.mark.parametrize("bad", ["", "relative", "/a//b", "/a/./b", "/a/../b", "/a/", "/",
                                 "/x\x00y", "/" + "n" * 300, HIDDEN_DIR + "/f", 7, None])
def test_invalid_paths_are_rejected(bad):
    with pytest.raises(Rejected):
        check_path(bad)


def test_ancestors_in_order():
    assert ancestors("/a/b/c") == ["/", "/a", "/a/b"]
    assert ancestors("/a") == ["/"]


def test_lock_set_follows_the_papers_total_order():
    """§4.1: read locks on every ancestor, write lock on the leaf, ordered by level and
    then lexicographically."""
    locks = LockTable.lock_set(["/save/user"], ["/home/user/foo", "/b"])
    assert locks == [("/", False), ("/b", True), ("/home", False), ("/save", False),
                     ("/home/user", False), ("/save/user", False), ("/home/user/foo", True)]


def test_concurrent_creates_in_one_directory_but_not_during_its_snapshot():
    """§4.1: creating /home/user/foo needs only a read lock on /home/user, so two creates
    proceed together; a snapshot of /home/user (write lock) excludes them."""
    table = LockTable()
    create_a = LockTable.lock_set([], ["/home/user/a"])
    create_b = LockTable.lock_set([], ["/home/user/b"])
    snapshot = LockTable.lock_set([], ["/home/user", "/save/user"])
    assert table.try_acquire(create_a)
    assert table.try_acquire(create_b)
    assert not table.try_acquire(snapshot)
    table.release(create_a)
    table.release(create_b)
    assert table.try_acquire(snapshot)
    assert not table.try_acquire(create_a)
    assert table.held() == len(snapshot)
    table.release(snapshot)
    assert table.held() == 0


def test_a_failed_acquire_takes_nothing():
    table = LockTable()
    assert table.try_acquire(LockTable.lock_set([], ["/d/x"]))
    before = table.held()
    assert not table.try_acquire(LockTable.lock_set([], ["/a", "/d/x"]))
    assert table.held() == before


def _apply_all(records):
    md = Metadata()
    for i, rec in enumerate(records, 1):
        md.apply(i, rec)
    return md


def test_records_rebuild_the_namespace_and_chunk_refcounts():
    md = _apply_all([
        {"op": "create", "path": "/a/f"},
        {"op": "add_chunk", "path": "/a/f", "handle": 1},
        {"op": "add_chunk", "path": "/a/f", "handle": 2},
        {"op": "snapshot", "src": "/a", "dst": "/s"},
        {"op": "alloc", "next": 4},
        {"op": "cow", "path": "/a/f", "index": 1, "old": 2, "new": 3, "version": 0},
        {"op": "rename", "src": "/s", "dst": "/t"},
    ])
    assert md.ns.files == {"/a/f": [1, 3], "/t/f": [1, 2]}
    assert md.refs == {1: 2, 2: 1, 3: 1}
    assert md.next_handle == 4
    assert md.ns.listing("/") == [("a", True), ("t", True)]
    with pytest.raises(NotFound):
        md.ns.listing("/s")


def test_delete_hides_then_reclaim_drops_the_chunks():
    """§4.4: a deleted file is renamed to a hidden name; reclaiming it later frees its
    chunks (their handles leave the metadata, so chunkservers' copies become orphans)."""
    md = _apply_all([
        {"op": "create", "path": "/f"},
        {"op": "add_chunk", "path": "/f", "handle": 1},
        {"op": "delete", "path": "/f", "hidden": HIDDEN_DIR + "/3-f", "at": 10.0},
    ])
    assert "/f" not in md.ns.files and md.ns.files[HIDDEN_DIR + "/3-f"] == [1]
    assert 1 in md.versions and md.live_handles() == set()
    md.apply(4, {"op": "reclaim", "path": HIDDEN_DIR + "/3-f"})
    assert md.versions == {} and md.refs == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["create", "mkdir", "chunk", "rename", "snap",
                                             "version"]),
                          st.sampled_from(["/a", "/a/b", "/c", "/c/d", "/e"]),
                          st.sampled_from(["/x", "/a/y", "/z/w"])), max_size=25))
def test_checkpoint_round_trip_equals_replay(ops):
    """Recovery = checkpoint + tail: a checkpoint taken at any point and the rest of the
    log rebuild exactly the state of replaying everything (§2.6.3)."""
    records = []
    md = Metadata()
    for kind, path, other in ops:
        ns = md.ns
        rec = None
        if kind in ("create", "mkdir") and not ns.exists(path) and \
                not any(a in ns.files for a in ancestors(path)):
            rec = {"op": kind, "path": path}
        elif kind == "chunk" and path in ns.files:
            rec = {"op": "add_chunk", "path": path, "handle": md.next_handle}
        elif kind in ("rename", "snap") and ns.exists(path) and not ns.exists(other) and \
                not any(a in ns.files for a in ancestors(other)) and \
                not other.startswith(path + "/"):
            rec = {"op": "rename" if kind == "rename" else "snapshot", "src": path,
                   "dst": other}
        elif kind == "version" and md.versions:
            h = sorted(md.versions)[0]
            rec = {"op": "version", "handle": h, "version": md.versions[h] + 1}
        if rec is not None:
            md.apply(len(records) + 1, rec)
            records.append(rec)
    for cut in range(len(records) + 1):
        base = _apply_all(records[:cut])
        restored = Metadata.from_checkpoint(base.to_checkpoint())
        for i in range(cut, len(records)):
            restored.apply(i + 1, records[i])
        assert restored.to_checkpoint() == md.to_checkpoint()
        assert restored.refs == md.refs


def test_namespace_move_of_a_tree():
    ns = Namespace()
    ns.add_file("/a/b/f", [1])
    ns.add_file("/a/g", [2])
    ns.move("/a", "/m/n")
    assert ns.files == {"/m/n/b/f": [1], "/m/n/g": [2]}
    assert "/a" not in ns.dirs and ns.listing("/m/n") == [("b", True), ("g", False)]
