"""Durable storage for giants nodes: small state in SQL, bulk data in checksummed files.

DESIGN.md "storage": each node owns a data directory (``DataDir``). Metadata and small
durable state -- a process's ``Durable`` namespaces (GFS §2.6 operation log state,
Raft §5 persistent state, Chubby's database) -- go through SQLAlchemy in
``SqlDurableStore``, run in a worker thread from trio. Bulk data -- log segments,
chunk bytes (GFS §5.2), SSTables -- are plain files with checksums and explicit fsync
points (``AppendFile``, ``BlockChecksumFile``).

The file classes are synchronous (they do blocking file I/O); trio code calls them
through ``trio.to_thread.run_sync``. ``SqlDurableStore`` is async and does that itself.
"""

from giants.core.storage._datadir import DataDir, DataDirLocked
from giants.core.storage._files import (
    BLOCK_BYTES,
    MAX_RECORD_BYTES,
    AppendFile,
    BlockChecksumFile,
    ChecksumMismatch,
    CorruptRecord,
    checksum,
    scan_records,
)
from giants.core.storage._sql import SqlDurableStore, pack_value, unpack_value

__all__ = [
    "BLOCK_BYTES",
    "MAX_RECORD_BYTES",
    "AppendFile",
    "BlockChecksumFile",
    "ChecksumMismatch",
    "CorruptRecord",
    "DataDir",
    "DataDirLocked",
    "SqlDurableStore",
    "checksum",
    "pack_value",
    "scan_records",
    "unpack_value",
]
