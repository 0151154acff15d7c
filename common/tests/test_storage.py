"""Tests for giants.core.storage: SqlDurableStore, AppendFile, BlockChecksumFile, DataDir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from giants.core.codec import MessageRegistry, message
from giants.core.errors import LocalProtocolError
from giants.core.process import Delete, DeleteRange, Durable, PersistOp, Put
from giants.core.storage import (
    BLOCK_BYTES,
    AppendFile,
    BlockChecksumFile,
    ChecksumMismatch,
    CorruptRecord,
    DataDir,
    DataDirLocked,
    SqlDurableStore,
    pack_value,
    scan_records,
    unpack_value,
)

# -- SqlDurableStore -------------------------------------------------------------------


def as_plain(d: Durable) -> dict[str, dict[object, object]]:
    return {ns: d.namespace(ns) for ns in d.namespaces() if d.namespace(ns)}


@pytest.mark.trio
async def test_sql_store_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = SqlDurableStore(path)
    assert (await store.load()).is_empty()
    await store.apply([
        Put("log", 1, {"term": 1, "cmd": b"x"}),
        Put("log", 2, [1, "two", None]),
        Put("meta", "term", 7),
        Put("meta", "1", "str key one"),
        Put("meta", 1, "int key one"),
    ])
    await store.close()
    store = SqlDurableStore(path)
    d = await store.load()
    assert d.get("log", 1) == {"term": 1, "cmd": b"x"}
    assert d.get("log", 2) == [1, "two", None]
    assert d.get("meta", "term") == 7
    assert d.get("meta", "1") == "str key one"
    assert d.get("meta", 1) == "int key one"
    await store.close()


@pytest.mark.trio
async def test_sql_store_delete_range_only_int_keys(tmp_path: Path) -> None:
    store = SqlDurableStore(tmp_path / "s.sqlite3")
    await store.apply([Put("log", i, i * 10) for i in range(10)] + [Put("log", "5", "s")])
    await store.apply([DeleteRange("log", 3, 6), Delete("log", 9)])
    d = await store.load()
    assert sorted(k for k in d.namespace("log") if isinstance(k, int)) == [0, 1, 2, 6, 7, 8]
    assert d.get("log", "5") == "s"
    await store.apply([DeleteRange("log", 7, None)])
    assert set((await store.load()).namespace("log")) == {0, 1, 2, 6, "5"}
    await store.close()


@pytest.mark.trio
async def test_sql_store_batch_is_atomic_on_bad_value(tmp_path: Path) -> None:
    store = SqlDurableStore(tmp_path / "s.sqlite3")
    await store.apply([Put("a", 1, "kept")])
    with pytest.raises(LocalProtocolError):
        await store.apply([Put("a", 1, "changed"), Put("a", 2, object())])
    with pytest.raises(LocalProtocolError):
        await store.apply([Put("a", 3, "x"), Put("a", 2**64, "too big a key")])
    with pytest.raises(LocalProtocolError):
        await store.apply([Put("a", True, "bool key")])
    assert as_plain(await store.load()) == {"a": {1: "kept"}}
    await store.close()
    with pytest.raises(LocalProtocolError):
        await store.load()


@message("test.storage.entry", registry=None)
@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    data: bytes


def test_pack_value_nests_registered_messages() -> None:
    value = {"entries": [Entry(3, b"abc")], "n": 1}
    assert unpack_value(pack_value(value)) == value
    with pytest.raises(LocalProtocolError):
        pack_value({"x": object()})
    other = MessageRegistry()
    with pytest.raises(LocalProtocolError):
        pack_value(Entry(1, b""), other)


ns_st = st.sampled_from(["a", "b"])
key_st = st.one_of(st.integers(-3, 12), st.sampled_from(["k", "1", ""]))
value_st = st.one_of(st.integers(-(2**63), 2**64 - 1), st.binary(max_size=8), st.text(max_size=5), st.none())
op_st = st.one_of(
    st.builds(Put, ns_st, key_st, value_st),
    st.builds(Delete, ns_st, key_st),
    st.builds(DeleteRange, ns_st, st.integers(-4, 12), st.one_of(st.none(), st.integers(-4, 14))),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(op_st, max_size=8), max_size=5))
def test_sql_store_matches_in_memory_durable(tmp_path_factory: pytest.TempPathFactory,
                                             batches: list[list[PersistOp]]) -> None:
    path = tmp_path_factory.mktemp("h") / "s.sqlite3"
    model = Durable()

    async def run() -> Durable:
        store = SqlDurableStore(path, synchronous="OFF")
        for batch in batches:
            await store.apply(batch)
            for op in batch:
                model.apply(op)
        await store.close()
        store = SqlDurableStore(path, synchronous="OFF")
        loaded = await store.load()
        await store.close()
        return loaded

    assert as_plain(trio.run(run)) == as_plain(model)


def test_sql_store_portable_upsert_path(tmp_path: Path) -> None:
    """Dialects without ON CONFLICT get delete-then-insert; same results, in order."""
    store = SqlDurableStore(tmp_path / "g.sqlite3")
    store._put_stmt = None  # what a dialect other than SQLite/PostgreSQL gets
    store.apply_sync([Put("a", 1, "x"), Put("a", 1, "y"), Put("a", "k", 1), Delete("a", "k"),
                      Put("a", "k", 2), Put("a", 2, Entry(1, b"e"))])
    store.apply_sync([Put("a", 1, "z")])
    assert as_plain(store.load_sync()) == {"a": {1: "z", "k": 2, 2: Entry(1, b"e")}}
    store.close_sync()


def test_sql_store_synchronous_mode_is_checked(tmp_path: Path) -> None:
    with pytest.raises(LocalProtocolError):
        SqlDurableStore(tmp_path / "x", synchronous="SOMETIMES")


def test_sql_store_url_and_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite3"
    store = SqlDurableStore(f"sqlite:///{path}")
    store.apply_sync([Put("n", 1, 1)])
    assert store.load_sync().get("n", 1) == 1
    assert Path(f"{path}-wal").exists()  # WAL journal in use
    store.close_sync()


def test_sql_store_table_is_a_rowid_table_on_sqlite(tmp_path: Path) -> None:
    """Large values (snapshots) must not live in a WITHOUT ROWID b-tree: there they
    are keys, copied whenever neighbouring pages rebalance (see the module docstring)."""
    import sqlite3

    path = tmp_path / "r.sqlite3"
    store = SqlDurableStore(path)
    store.apply_sync([Put("snap", "s", os.urandom(256 * 1024)), Put("log", 1, b"x")])
    store.close_sync()
    (sql,) = sqlite3.connect(path).execute(
        "SELECT sql FROM sqlite_master WHERE name = 'giants_durable_v1'").fetchone()
    assert "WITHOUT ROWID" not in sql.upper()
    again = SqlDurableStore(path)
    assert again.load_sync().get("log", 1) == b"x"
    again.close_sync()


CRASH_WRITER = textwrap.dedent("""
    import sys, trio
    from giants.core.process import Put
    from giants.core.storage import SqlDurableStore

    async def main():
        store = SqlDurableStore(sys.argv[1])
        i = 0
        while True:
            await store.apply([Put("log", i, b"x" * 100), Put("meta", "last", i)])
            print(i, flush=True)   # acknowledged only after apply returned
            i += 1

    trio.run(main)
""")


def test_sql_store_keeps_every_acknowledged_apply_across_sigkill(tmp_path: Path) -> None:
    """A real process applies batches and acknowledges each on stdout; after SIGKILL
    every acknowledged batch is in the store, complete (no half batch)."""
    path = tmp_path / "crash.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_WRITER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = -1
    deadline = time.monotonic() + 30
    while acked < 30 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert acked >= 30, "writer did not acknowledge enough batches"
    store = SqlDurableStore(path)
    d = store.load_sync()
    store.close_sync()
    last = d.get("meta", "last")
    assert last >= acked
    assert sorted(d.namespace("log")) == list(range(last + 1))


# -- AppendFile ------------------------------------------------------------------------


def test_append_file_round_trip_and_read_at(tmp_path: Path) -> None:
    path = tmp_path / "seg"
    with AppendFile(path) as f:
        offsets = [f.append(p) for p in (b"one", b"", b"three" * 100)]
        f.fsync()
        assert f.read_at(offsets[2]) == b"three" * 100
        with pytest.raises(CorruptRecord):
            f.read_at(offsets[0] + 1)
    assert list(scan_records(path)) == list(zip(offsets, [b"one", b"", b"three" * 100], strict=True))
    with AppendFile(path) as f:
        assert f.records == 3 and f.truncated_bytes == 0
        f.append(b"four")
    assert [p for _, p in scan_records(path)] == [b"one", b"", b"three" * 100, b"four"]


@pytest.mark.parametrize("damage", ["torn_header", "torn_payload", "flipped_byte", "garbage_len"])
def test_append_file_stops_at_and_truncates_a_bad_tail(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "seg"
    with AppendFile(path) as f:
        f.append(b"good-1")
        last = f.append(b"good-2")
        tail = f.append(b"doomed record")
    raw = bytearray(path.read_bytes())
    if damage == "torn_header":
        raw = raw[: tail + 5]
    elif damage == "torn_payload":
        raw = raw[:-3]
    elif damage == "flipped_byte":
        raw[-2] ^= 0x40
    else:
        raw[tail : tail + 4] = (2**31).to_bytes(4, "big")
    path.write_bytes(bytes(raw))
    assert [p for _, p in scan_records(path)] == [b"good-1", b"good-2"]
    with AppendFile(path) as f:
        assert f.truncated_bytes == len(raw) - tail
        assert f.size == tail and f.records == 2
        f.append(b"after")
    assert [p for _, p in scan_records(path)] == [b"good-1", b"good-2", b"after"]
    assert last < tail


def test_append_file_truncate_and_limits(tmp_path: Path) -> None:
    with AppendFile(tmp_path / "seg", max_record_bytes=16) as f:
        f.append(b"a")
        cut = f.append(b"b")
        f.append(b"c")
        f.truncate(cut)
        assert [p for _, p in f.scan()] == [b"a"] and f.records == 1
        with pytest.raises(LocalProtocolError):
            f.append(b"x" * 17)
        with pytest.raises(LocalProtocolError):
            f.truncate(10_000)
    with pytest.raises(LocalProtocolError):
        f.append(b"closed")


# -- BlockChecksumFile -----------------------------------------------------------------


def test_block_file_reads_writes_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "chunk"
    data = os.urandom(BLOCK_BYTES * 2 + 100)
    with BlockChecksumFile(path) as f:
        f.write_at(0, data[:1000])
        f.append(data[1000:BLOCK_BYTES + 5])  # incremental checksum of the partial block
        f.append(data[BLOCK_BYTES + 5:])
        f.fsync()
        assert f.read_at(0, len(data)) == data
        assert f.read_at(BLOCK_BYTES - 10, 20) == data[BLOCK_BYTES - 10 : BLOCK_BYTES + 10]
        f.write_at(50, b"Z" * 10)  # overwrite inside block 0
        f.write_at(2 * BLOCK_BYTES + 100, b"tail")
        assert f.verify() == []
    expected = data[:50] + b"Z" * 10 + data[60:] + b"tail"
    with BlockChecksumFile(path) as f:
        assert f.size == len(expected)
        assert f.read_at(0, 10**9) == expected
        assert f.read_at(len(expected), 5) == b""
        with pytest.raises(LocalProtocolError):
            f.write_at(len(expected) + 1, b"hole")


def test_block_file_reports_the_corrupt_block(tmp_path: Path) -> None:
    path = tmp_path / "chunk"
    with BlockChecksumFile(path) as f:
        f.append(bytes(BLOCK_BYTES * 3))
    raw = bytearray(path.read_bytes())
    raw[BLOCK_BYTES + 7] ^= 1
    path.write_bytes(bytes(raw))
    with BlockChecksumFile(path) as f:
        assert f.verify() == [1]
        assert f.read_at(0, 100) == bytes(100)  # block 0 is fine
        with pytest.raises(ChecksumMismatch) as exc:
            f.read_at(BLOCK_BYTES * 2 - 5, 10)
        assert exc.value.block == 1
        with pytest.raises(ChecksumMismatch):  # partial overwrite must not hide it
            f.write_at(BLOCK_BYTES + 1, b"x")
        f.write_at(BLOCK_BYTES, bytes(BLOCK_BYTES))  # a full overwrite repairs it
        assert f.verify() == []


def test_block_file_lost_sidecar_counts_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "chunk"
    with BlockChecksumFile(path) as f:
        f.append(b"abc" * 30000)
    Path(f"{path}.crc").unlink()
    with BlockChecksumFile(path) as f:
        assert f.verify() == [0, 1]


# -- DataDir ---------------------------------------------------------------------------


def test_data_dir_layout_and_lock(tmp_path: Path) -> None:
    d = DataDir(tmp_path / "node-0")
    assert d.sqlite_path.parent == d.root and d.segments_dir.is_dir()
    assert d.segment_path(3).name == "00000000000000000003.seg"
    d.segment_path(3).write_bytes(b"")
    d.segment_path(12).write_bytes(b"")
    assert d.segment_indices() == [3, 12]
    with pytest.raises(LocalProtocolError):
        d.sub("../escape")
    with d:
        with pytest.raises(DataDirLocked) as exc:
            DataDir(d.root).lock()
        assert exc.value.holder_pid == os.getpid()
    DataDir(d.root).lock()  # released by the context manager


def test_data_dir_lock_across_processes(tmp_path: Path) -> None:
    root = tmp_path / "n"
    code = ("import sys, time; from giants.core.storage import DataDir; "
            "d = DataDir(sys.argv[1]); d.lock(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirLocked) as exc:
            DataDir(root).lock()
        assert exc.value.holder_pid == proc.pid
    finally:
        proc.kill()
        proc.wait()
    DataDir(root).lock()  # the OS released the dead holder's lock
