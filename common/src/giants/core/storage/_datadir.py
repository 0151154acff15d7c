"""``DataDir``: the layout of one node's data directory, and its owner lock.

DESIGN.md "storage": each node owns a data directory. Layout::

    <root>/LOCK            fcntl lock held by the process using the directory (holds its pid)
    <root>/config.json     the instance config the launcher wrote
    <root>/log.txt         the process's stdout and stderr (launcher)
    <root>/state.sqlite3   SqlDurableStore's database (plus -wal / -shm files)
    <root>/segments/       AppendFile log segments, 00000000000000000001.seg, ...
    <root>/chunks/         bulk data files (chunks, SSTables)
    <root>/<name>/         anything else a package asks for with ``sub(name)``

Two processes using one directory would corrupt it; ``lock()`` takes an exclusive,
non-blocking ``fcntl.flock`` on ``LOCK`` and fails with ``DataDirLocked`` if another
open file description (another process, or another ``DataDir`` in this one) holds it.
The lock is released by ``unlock()``/the context manager, or by the OS when the
process dies, so a SIGKILLed node never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from giants.core.errors import LocalProtocolError

__all__ = ["DataDir", "DataDirLocked"]


class DataDirLocked(LocalProtocolError):
    """Another process (``holder_pid``, if known) is using this data directory."""

    def __init__(self, path: Path, holder_pid: int | None) -> None:
        who = f"pid {holder_pid}" if holder_pid else "another process"
        super().__init__(f"data dir {path} is in use by {who}")
        self.path = path
        self.holder_pid = holder_pid


class DataDir:
    """Paths inside one node's data directory (created on construction)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path).absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = -1

    @property
    def lock_path(self) -> Path:
        return self.root / "LOCK"

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def log_path(self) -> Path:
        return self.root / "log.txt"

    @property
    def sqlite_path(self) -> Path:
        return self.root / "state.sqlite3"

    @property
    def sqlite_url(self) -> str:
        return f"sqlite:///{self.sqlite_path}"

    @property
    def segments_dir(self) -> Path:
        return self.sub("segments")

    def segment_path(self, index: int) -> Path:
        """The log segment file number ``index`` (zero padded so names sort)."""
        if index < 0:
            raise LocalProtocolError(f"negative segment index {index}")
        return self.segments_dir / f"{index:020d}.seg"

    def segment_indices(self) -> list[int]:
        """Indices of the existing segment files, ascending."""
        out = []
        for p in self.segments_dir.glob("*.seg"):
            if p.stem.isdigit():
                out.append(int(p.stem))
        return sorted(out)

    @property
    def chunks_dir(self) -> Path:
        return self.sub("chunks")

    def sub(self, name: str) -> Path:
        """A subdirectory (created). Raises ``LocalProtocolError`` for a name that is not
        one plain path component."""
        if not name or "/" in name or name in (".", ".."):
            raise LocalProtocolError(f"bad data dir subdirectory name {name!r}")
        p = self.root / name
        p.mkdir(exist_ok=True)
        return p

    # -- ownership ----------------------------------------------------------------------

    def lock(self) -> None:
        """Take the directory's exclusive lock. Raises ``DataDirLocked`` if it is taken."""
        if self._lock_fd >= 0:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirLocked(self.root, int(holder) if holder.isdigit() else None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    @property
    def locked(self) -> bool:
        return self._lock_fd >= 0

    def __enter__(self) -> DataDir:
        self.lock()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.unlock()

    def __repr__(self) -> str:
        return f"DataDir({str(self.root)!r})"
