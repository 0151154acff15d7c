"""Chunks as plain local files with per-64 KB-block checksums (GFS paper §2.5, §5.2).

``FileChunkStore`` is the real chunkserver's ``ChunkStore``: chunk ``h`` is the file
``<dir>/<h>.chunk`` with its CRC-32C sidecar ``<h>.chunk.crc``
(``giants.core.storage.BlockChecksumFile``), so every read verifies the blocks it
touches, appends extend the last block's checksum incrementally, and overwrites verify
the partial blocks at their edges first. A gap before a write (a secondary that missed
a failed mutation, or record-append padding) is filled with zeros.

Durability: the bytes are written through the OS page cache without an fsync per
mutation -- a SIGKILLed chunkserver keeps them; a power failure of one machine is
covered by the other replicas, as in GFS where a mutation is durable because it is on
several chunkservers. Version numbers (the chunkserver's ``Durable``) are fsynced.
"""

from __future__ import annotations

import os
import shutil
from collections import OrderedDict
from pathlib import Path

from giants.core.storage import BlockChecksumFile

__all__ = ["FileChunkStore", "MAX_OPEN_CHUNKS"]

# Open chunk files kept cached; each costs two file descriptors.
MAX_OPEN_CHUNKS = 128
SUFFIX = ".chunk"


class FileChunkStore:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._open: OrderedDict[int, BlockChecksumFile] = OrderedDict()

    def path(self, handle: int) -> Path:
        return self.dir / f"{handle}{SUFFIX}"

    def _file(self, handle: int, create: bool = False) -> BlockChecksumFile:
        f = self._open.get(handle)
        if f is not None:
            self._open.move_to_end(handle)
            return f
        if not create and not self.path(handle).exists():
            raise KeyError(handle)
        f = BlockChecksumFile(self.path(handle))
        self._open[handle] = f
        while len(self._open) > MAX_OPEN_CHUNKS:
            _, old = self._open.popitem(last=False)
            old.close()
        return f

    def handles(self) -> list[int]:
        out = []
        for p in self.dir.glob(f"*{SUFFIX}"):
            stem = p.name[: -len(SUFFIX)]
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def has(self, handle: int) -> bool:
        return handle in self._open or self.path(handle).exists()

    def length(self, handle: int) -> int:
        return self._file(handle).size

    def create(self, handle: int) -> None:
        self._file(handle, create=True)

    def read(self, handle: int, offset: int, length: int) -> bytes:
        return self._file(handle).read_at(offset, length)

    def write(self, handle: int, offset: int, data: bytes) -> None:
        f = self._file(handle)
        if offset > f.size:
            f.write_at(f.size, bytes(offset - f.size))
        f.write_at(offset, data)

    def copy(self, old: int, new: int) -> None:
        src = self._file(old)
        src.read_at(0, src.size)  # verify before copying: never copy corruption
        self.remove(new)
        shutil.copyfile(self.path(old), self.path(new))
        shutil.copyfile(f"{self.path(old)}.crc", f"{self.path(new)}.crc")

    def remove(self, handle: int) -> None:
        f = self._open.pop(handle, None)
        if f is not None:
            f.close()
        for p in (self.path(handle), Path(f"{self.path(handle)}.crc")):
            p.unlink(missing_ok=True)

    def verify(self, handle: int) -> list[int]:
        return self._file(handle).verify()

    def sync(self) -> None:
        for f in self._open.values():
            f.fsync()

    def close(self) -> None:
        for f in self._open.values():
            f.close()
        self._open.clear()
