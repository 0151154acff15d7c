"""Chunk stores: per-64 KB-block checksums verified on every read (GFS paper §5.2), the
same behaviour in memory (simulator) and on disk (real chunkservers)."""

from __future__ import annotations

import pytest

from giants.core.storage import ChecksumMismatch
from giants.gfs._chunkfiles import FileChunkStore
from giants.gfs._chunkstore import MemoryChunkStore, PushBuffer

BLOCK = 64 * 1024


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryChunkStore()
    else:
        s = FileChunkStore(tmp_path / "chunks")
        yield s
        s.close()


def corrupt(store, handle, offset):
    if isinstance(store, MemoryChunkStore):
        store.corrupt(handle, offset)
    else:
        with open(store.path(handle), "r+b") as f:
            f.seek(offset)
            b = f.read(1)
            f.seek(offset)
            f.write(bytes([b[0] ^ 0xFF]))


def test_write_read_pad_copy_remove(store):
    store.create(7)
    store.write(7, 0, b"a" * 100)
    store.write(7, 200, b"b" * 10)          # a gap is padded with zeros
    assert store.length(7) == 210
    assert store.read(7, 0, 300) == b"a" * 100 + bytes(100) + b"b" * 10
    store.copy(7, 8)
    store.write(8, 0, b"c")
    assert store.read(7, 0, 1) == b"a" and store.read(8, 0, 2) == b"ca"
    assert store.handles() == [7, 8]
    store.remove(7)
    assert store.handles() == [8] and not store.has(7)


def test_corrupt_block_is_caught_on_read_and_by_the_scan(store):
    store.create(1)
    store.write(1, 0, bytes(range(256)) * (3 * BLOCK // 256))
    corrupt(store, 1, BLOCK + 17)
    assert store.read(1, 0, BLOCK) == (bytes(range(256)) * (BLOCK // 256))   # block 0 fine
    with pytest.raises(ChecksumMismatch) as info:
        store.read(1, BLOCK, 10)
    assert info.value.block == 1
    assert store.verify(1) == [1]


def test_partial_overwrite_of_a_corrupt_block_is_refused(store):
    store.create(2)
    store.write(2, 0, b"z" * (2 * BLOCK))
    corrupt(store, 2, 5)
    with pytest.raises(ChecksumMismatch):
        store.write(2, 10, b"new")


def test_file_store_survives_reopen(tmp_path):
    s = FileChunkStore(tmp_path)
    s.create(3)
    s.write(3, 0, b"persist")
    s.close()
    s2 = FileChunkStore(tmp_path)
    assert s2.handles() == [3] and s2.read(3, 0, 100) == b"persist"
    s2.close()


def test_push_buffer_evicts_oldest_beyond_its_bound():
    buf = PushBuffer(max_bytes=100)
    buf.put("a", b"x" * 60)
    buf.put("b", b"y" * 60)
    assert buf.get("a") is None and buf.get("b") == b"y" * 60
    assert buf.take("b") == b"y" * 60 and len(buf) == 0
