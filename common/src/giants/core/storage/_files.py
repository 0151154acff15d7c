"""Checksummed files for bulk data: append-only record files and per-block checksums.

``AppendFile`` holds log segments (Kafka's log, a Raft/Paxos log written in bulk,
Bigtable's commit log): records framed as ``[u32 length][u32 crc32c][payload]``, big
endian, the CRC covering the length bytes and the payload. Durability is explicit:
``append`` only writes, ``fsync`` makes everything appended so far durable. A crash
can leave a torn or garbage tail; ``scan_records`` stops cleanly before it and opening
an ``AppendFile`` truncates it, so later appends never follow garbage.

``BlockChecksumFile`` is GFS §5.2's chunk integrity scheme: the data is divided into
64 KB blocks, each with a 32-bit checksum kept apart from the data (a ``.crc`` sidecar
file). Reads verify every block they touch and report the corrupt block's index; an
append that starts inside the last partial block extends its checksum incrementally
without reading it back; an overwrite reads and verifies the first and last blocks it
partially covers first, so it cannot hide existing corruption (all as in §5.2).
A crash between the data write and the sidecar write shows up as a corrupt block,
which GFS treats like any other corruption (re-replicate from another replica).

These classes are synchronous and do blocking I/O: call them from a worker thread in
trio code (``trio.to_thread.run_sync``). Checksums are CRC-32C (the ``crc32c`` package).
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from crc32c import crc32c

from giants.core.errors import DefiniteError, LocalProtocolError

__all__ = [
    "BLOCK_BYTES",
    "MAX_RECORD_BYTES",
    "AppendFile",
    "BlockChecksumFile",
    "ChecksumMismatch",
    "CorruptRecord",
    "checksum",
    "scan_records",
]

HEADER = struct.Struct(">II")
# Same bound as the wire frame limit: no record is bigger than what one frame carries,
# and a corrupt length above it is recognised as garbage instead of being read.
MAX_RECORD_BYTES = 64 * 1024 * 1024
# GFS §5.2: "A chunk is broken up into 64 KB blocks. Each has a corresponding 32 bit
# checksum."
BLOCK_BYTES = 64 * 1024
SCAN_READ_BYTES = 1 << 20


def checksum(data: bytes | bytearray | memoryview, prev: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``prev`` (the CRC of what came before)."""
    return crc32c(data, prev)


class CorruptRecord(DefiniteError):
    """A record at ``offset`` failed its checksum or was cut short."""

    code = "corrupt_record"


class ChecksumMismatch(DefiniteError):
    """Block ``block`` of a checksummed file does not match its stored checksum."""

    code = "checksum_mismatch"

    def __init__(self, message: str = "", *, block: int, path: str = "") -> None:
        super().__init__(message or f"checksum mismatch in block {block} of {path}",
                         block=block, path=path)
        self.block = block
        self.path = path


def _record_crc(header_len: bytes, payload: bytes | memoryview) -> int:
    return crc32c(payload, crc32c(header_len))


def scan_records(path: str | os.PathLike[str], *, max_record_bytes: int = MAX_RECORD_BYTES
                 ) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, payload)`` for each intact record from the start of the file,
    stopping silently at the first torn, truncated or corrupt record."""
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                return
            length, crc = HEADER.unpack(header)
            if length > max_record_bytes:
                return
            payload = f.read(length)
            if len(payload) < length or _record_crc(header[:4], payload) != crc:
                return
            yield offset, payload
            offset += HEADER.size + length


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


class AppendFile:
    """An append-only record file (see the module docstring).

    Opening scans the file, truncates a torn tail (``truncated_bytes`` says how much)
    and positions at the end. ``size`` is the byte length of the intact records.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        self.path = Path(path)
        self.max_record_bytes = max_record_bytes
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if created:
            _fsync_dir(self.path.parent)
        end = 0
        self.records = 0
        for offset, payload in scan_records(self.path, max_record_bytes=max_record_bytes):
            end = offset + HEADER.size + len(payload)
            self.records += 1
        on_disk = os.fstat(self._fd).st_size
        self.truncated_bytes = on_disk - end
        if self.truncated_bytes:
            os.ftruncate(self._fd, end)
            os.fsync(self._fd)
        self.size = end

    def append(self, payload: bytes) -> int:
        """Write one record; returns its offset. Not durable until ``fsync``.

        Raises ``LocalProtocolError`` for a payload above ``max_record_bytes`` or a
        closed file; ``OSError`` from the disk (then the tail may be torn: reopen).
        """
        if len(payload) > self.max_record_bytes:
            raise LocalProtocolError(f"record of {len(payload)} bytes exceeds the limit")
        self._check_open()
        length = struct.pack(">I", len(payload))
        header = length + struct.pack(">I", _record_crc(length, payload))
        offset = self.size
        _write_all(self._fd, header + payload, offset)
        self.size = offset + len(header) + len(payload)
        self.records += 1
        return offset

    def fsync(self) -> None:
        """Make every appended record durable."""
        self._check_open()
        os.fdatasync(self._fd)

    def read_at(self, offset: int) -> bytes:
        """The payload of the record at ``offset``. Raises ``CorruptRecord`` if the
        bytes there are not an intact record."""
        self._check_open()
        header = os.pread(self._fd, HEADER.size, offset)
        if len(header) < HEADER.size:
            raise CorruptRecord(f"no record header at offset {offset}", offset=offset)
        length, crc = HEADER.unpack(header)
        if length > self.max_record_bytes:
            raise CorruptRecord(f"impossible record length at offset {offset}", offset=offset)
        payload = os.pread(self._fd, length, offset + HEADER.size)
        if len(payload) < length or _record_crc(header[:4], payload) != crc:
            raise CorruptRecord(f"record at offset {offset} fails its checksum", offset=offset)
        return payload

    def scan(self) -> Iterator[tuple[int, bytes]]:
        """``scan_records`` over this file."""
        return scan_records(self.path, max_record_bytes=self.max_record_bytes)

    def truncate(self, offset: int) -> None:
        """Drop every record from ``offset`` (a record boundary) on, durably."""
        self._check_open()
        if not 0 <= offset <= self.size:
            raise LocalProtocolError(f"truncate offset {offset} outside 0..{self.size}")
        os.ftruncate(self._fd, offset)
        os.fsync(self._fd)
        self.size = offset
        self.records = sum(1 for _ in self.scan())

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _check_open(self) -> None:
        if self._fd < 0:
            raise LocalProtocolError(f"{self.path} is closed")

    def __enter__(self) -> AppendFile:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class BlockChecksumFile:
    """A data file with a CRC-32C per ``block_bytes`` block in ``<path>.crc``."""

    def __init__(self, path: str | os.PathLike[str], *, block_bytes: int = BLOCK_BYTES) -> None:
        self.path = Path(path)
        self.sums_path = Path(f"{self.path}.crc")
        self.block_bytes = block_bytes
        created = not self.path.exists() or not self.sums_path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._sums_fd = os.open(self.sums_path, os.O_RDWR | os.O_CREAT, 0o644)
        if created:
            _fsync_dir(self.path.parent)
        self.size = os.fstat(self._fd).st_size
        raw = os.pread(self._sums_fd, os.fstat(self._sums_fd).st_size, 0)
        self._sums = array("I")
        self._sums.frombytes(raw[: len(raw) // 4 * 4])
        if struct.pack("=I", 1) != struct.pack("<I", 1):
            self._sums.byteswap()  # the sidecar is little endian on every platform
        blocks = self._blocks_for(self.size)
        while len(self._sums) < blocks:  # sidecar write lost in a crash: never matches
            self._sums.append(self._mismatch_for(len(self._sums)))

    # -- reads ------------------------------------------------------------------------

    def read_at(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the file), verifying
        every block touched. Raises ``ChecksumMismatch`` naming the first bad block."""
        if offset < 0 or length < 0:
            raise LocalProtocolError("negative offset or length")
        end = min(offset + length, self.size)
        if offset >= end:
            return b""
        first, last = offset // self.block_bytes, (end - 1) // self.block_bytes
        start = first * self.block_bytes
        data = os.pread(self._fd, (last + 1) * self.block_bytes - start, start)
        for i in range(first, last + 1):
            lo = (i - first) * self.block_bytes
            self._verify_block(i, data[lo : lo + self.block_bytes])
        return data[offset - start : end - start]

    def verify(self) -> list[int]:
        """Indices of every corrupt block (GFS's idle-time scan)."""
        bad = []
        for i in range(self._blocks_for(self.size)):
            block = os.pread(self._fd, self.block_bytes, i * self.block_bytes)
            if checksum(block) != self._sums[i]:
                bad.append(i)
        return bad

    # -- writes -----------------------------------------------------------------------

    def write_at(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` (at most ``size``: no holes) and update the
        checksums. Not durable until ``fsync``. Raises ``ChecksumMismatch`` (nothing
        written) if a block it partially overwrites is already corrupt."""
        if not 0 <= offset <= self.size:
            raise LocalProtocolError(f"write offset {offset} outside 0..{self.size}")
        if not data:
            return
        end = offset + len(data)
        first, last = offset // self.block_bytes, (end - 1) // self.block_bytes
        new_sums = self._sums_after_write(offset, data, first, last)
        _write_all(self._fd, data, offset)
        self.size = max(self.size, end)
        for i, s in new_sums.items():
            if i < len(self._sums):
                self._sums[i] = s
            else:
                self._sums.append(s)
        lo = min(new_sums)
        _write_all(self._sums_fd, self._sums_bytes(lo, max(new_sums) + 1), lo * 4)

    def append(self, data: bytes) -> int:
        """Write ``data`` at the end; returns the offset it starts at."""
        offset = self.size
        self.write_at(offset, data)
        return offset

    def fsync(self) -> None:
        """Make data and checksums durable (data first)."""
        os.fdatasync(self._fd)
        os.fdatasync(self._sums_fd)

    def close(self) -> None:
        for fd in (self._fd, self._sums_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._sums_fd = -1

    def __enter__(self) -> BlockChecksumFile:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------

    def _blocks_for(self, size: int) -> int:
        return (size + self.block_bytes - 1) // self.block_bytes

    def _mismatch_for(self, i: int) -> int:
        block = os.pread(self._fd, self.block_bytes, i * self.block_bytes)
        return (checksum(block) + 1) & 0xFFFFFFFF

    def _verify_block(self, i: int, block: bytes) -> None:
        if checksum(block) != self._sums[i]:
            raise ChecksumMismatch(block=i, path=str(self.path))

    def _sums_after_write(self, offset: int, data: bytes, first: int, last: int
                          ) -> dict[int, int]:
        bs = self.block_bytes
        sums: dict[int, int] = {}
        end = offset + len(data)
        for i in range(first, last + 1):
            b_lo, b_hi = i * bs, (i + 1) * bs
            w_lo, w_hi = max(offset, b_lo), min(end, b_hi)
            piece = data[w_lo - offset : w_hi - offset]
            old_len = max(0, min(self.size, b_hi) - b_lo)
            if w_lo == b_lo and w_hi >= b_lo + old_len:
                sums[i] = checksum(piece)  # the write covers the whole old block
            elif w_lo == b_lo + old_len:
                sums[i] = checksum(piece, self._sums[i])  # §5.2 incremental append
            else:
                old = os.pread(self._fd, old_len, b_lo)
                self._verify_block(i, old)
                rel = w_lo - b_lo
                merged = old[:rel] + piece + old[rel + len(piece) :]
                sums[i] = checksum(merged)
        return sums

    def _sums_bytes(self, lo: int, hi: int) -> bytes:
        part = self._sums[lo:hi]
        if struct.pack("=I", 1) != struct.pack("<I", 1):
            part.byteswap()
        return part.tobytes()
