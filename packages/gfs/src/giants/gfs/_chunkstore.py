"""Where a chunkserver keeps its chunks, and the buffer pushed data waits in
(GFS paper §2.5 "Chunk Size", §3.2 "Data Flow", §5.2 "Data Integrity").

``ChunkStore`` is the seam between the chunkserver's sans-I/O core and its disk: the
core decides *what* to read, write, copy or delete; a store does it. Each chunk is
checksummed per 64 KB block and every read verifies the blocks it touches, raising
``ChecksumMismatch`` for a corrupt one (§5.2). Two stores implement it:

* ``MemoryChunkStore`` (here) -- for the simulator: chunks in memory with real CRC-32C
  block checksums, surviving a simulated crash (it is the "disk"), with ``corrupt()``
  to flip a byte behind the checksums' back;
* ``FileChunkStore`` (``_chunkfiles``) -- for real chunkservers: one plain file per chunk
  with a ``.crc`` sidecar (``giants.core.storage.BlockChecksumFile``).

``PushBuffer`` is §3.2's "internal LRU buffer cache": data pushed by clients waits here,
keyed by a client-chosen id, until the primary's mutation order uses it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from giants.core.errors import LocalProtocolError
from giants.core.storage import BLOCK_BYTES, ChecksumMismatch, checksum

__all__ = ["ChunkStore", "MemoryChunkStore", "PushBuffer", "PUSH_BUFFER_BYTES"]

# Pushed data waiting for its mutation. Generous enough for several in-flight 64 MB
# chunk writes per server; beyond it the oldest pushes are evicted (their mutations
# fail with "data not pushed" and the client retries).
PUSH_BUFFER_BYTES = 512 * 1024 * 1024


class ChunkStore(Protocol):
    """Chunk replicas on one chunkserver's disk. Errors: ``ChecksumMismatch`` for a
    corrupt block (nothing changed), ``LocalProtocolError`` for a misuse."""

    def handles(self) -> list[int]: ...
    def has(self, handle: int) -> bool: ...
    def length(self, handle: int) -> int: ...
    def create(self, handle: int) -> None:
        """An empty chunk (no-op if it exists)."""
    def read(self, handle: int, offset: int, length: int) -> bytes:
        """Verified bytes (fewer at the chunk's end)."""
        ...
    def write(self, handle: int, offset: int, data: bytes) -> None:
        """Write at ``offset``; a gap before it is filled with zeros (padding)."""
    def copy(self, old: int, new: int) -> None:
        """A local copy of ``old`` named ``new`` (copy-on-write, §3.4)."""
    def remove(self, handle: int) -> None: ...
    def verify(self, handle: int) -> list[int]:
        """Corrupt block indices (the idle-time scan, §5.2)."""
        ...


class MemoryChunkStore:
    """An in-memory ``ChunkStore`` with real per-block checksums, for the simulator."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self.block_bytes = block_bytes
        self._data: dict[int, bytearray] = {}
        self._sums: dict[int, list[int]] = {}

    def handles(self) -> list[int]:
        return sorted(self._data)

    def has(self, handle: int) -> bool:
        return handle in self._data

    def length(self, handle: int) -> int:
        return len(self._data[handle])

    def create(self, handle: int) -> None:
        if handle not in self._data:
            self._data[handle] = bytearray()
            self._sums[handle] = []

    def read(self, handle: int, offset: int, length: int) -> bytes:
        data = self._data[handle]
        end = min(len(data), offset + length)
        if offset >= end:
            return b""
        for i in range(offset // self.block_bytes, (end - 1) // self.block_bytes + 1):
            self._check(handle, i)
        return bytes(data[offset:end])

    def write(self, handle: int, offset: int, data: bytes) -> None:
        buf = self._data[handle]
        if offset < 0:
            raise LocalProtocolError("negative offset")
        end = offset + len(data)
        if end <= len(buf) and not data:
            return
        first = min(offset, len(buf)) // self.block_bytes
        last_old = (len(buf) - 1) // self.block_bytes if buf else -1
        for i in {first, max(end - 1, 0) // self.block_bytes}:
            if i <= last_old:
                self._check(handle, i)  # a partial overwrite must not hide corruption
        if offset > len(buf):
            buf.extend(bytes(offset - len(buf)))
        buf[offset:end] = data
        self._resum(handle, first, (len(buf) - 1) // self.block_bytes)

    def copy(self, old: int, new: int) -> None:
        self._data[new] = bytearray(self._data[old])
        self._sums[new] = list(self._sums[old])

    def remove(self, handle: int) -> None:
        self._data.pop(handle, None)
        self._sums.pop(handle, None)

    def verify(self, handle: int) -> list[int]:
        bad = []
        for i in range(len(self._sums[handle])):
            try:
                self._check(handle, i)
            except ChecksumMismatch:
                bad.append(i)
        return bad

    def corrupt(self, handle: int, offset: int) -> None:
        """Flip one byte without updating its block's checksum (a bad disk)."""
        self._data[handle][offset] ^= 0xFF

    def _block(self, handle: int, i: int) -> bytes:
        bs = self.block_bytes
        return bytes(self._data[handle][i * bs:(i + 1) * bs])

    def _check(self, handle: int, i: int) -> None:
        if checksum(self._block(handle, i)) != self._sums[handle][i]:
            raise ChecksumMismatch(block=i, path=f"chunk {handle}")

    def _resum(self, handle: int, first: int, last: int) -> None:
        sums = self._sums[handle]
        for i in range(first, last + 1):
            s = checksum(self._block(handle, i))
            if i < len(sums):
                sums[i] = s
            else:
                sums.append(s)


class PushBuffer:
    """Pushed data by id, oldest evicted first beyond ``max_bytes`` (§3.2's LRU)."""

    def __init__(self, max_bytes: int = PUSH_BUFFER_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0

    def put(self, data_id: str, data: bytes) -> None:
        self.take(data_id)
        self._items[data_id] = data
        self._bytes += len(data)
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= len(old)

    def get(self, data_id: str) -> bytes | None:
        return self._items.get(data_id)

    def take(self, data_id: str) -> bytes | None:
        data = self._items.pop(data_id, None)
        if data is not None:
            self._bytes -= len(data)
        return data

    def __len__(self) -> int:
        return len(self._items)
