"""The master's namespace and its locks (GFS paper §4.1 "Namespace Management and Locking").

GFS has no per-directory data structure: the namespace is a lookup table from full
pathnames to metadata. We keep that table (``files`` and ``dirs``) plus a child index so
``list`` does not scan everything.

Locks: each master operation takes a **read lock on every ancestor** of the paths it
names and a read or write lock on the paths themselves (§4.1). Creating ``/d/f`` takes a
read lock on ``/d`` and a write lock on ``/d/f``, so concurrent creates in one directory
proceed, while a snapshot of ``/d`` (write lock on ``/d``) excludes them. A lock set is
acquired in the paper's total order -- by depth in the tree, then lexicographically --
and all at once or not at all, so operations never deadlock; an operation that cannot
get its set waits in FIFO order. Locks matter because an operation can span several
master steps (a snapshot waits for lease revocations, every mutation waits for its log
record to reach the shadow masters).

Paths: absolute, ``/``-separated, no empty, ``.`` or ``..`` components, no NUL, at most
``MAX_PATH_CHARS``. The top-level name ``HIDDEN_DIR`` is reserved for deleted files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from giants.core.errors import NotFound, Rejected

__all__ = ["HIDDEN_DIR", "MAX_PATH_CHARS", "LockSet", "LockTable", "Namespace",
           "ancestors", "check_path", "parent_of"]

# Generous for real paths, small enough that a hostile client cannot bloat the table.
MAX_PATH_CHARS = 1024
MAX_NAME_CHARS = 255
# Deleted files are renamed into this reserved directory with a hidden name (§4.4).
HIDDEN_DIR = "/.deleted"


def check_path(path: object, *, allow_root: bool = False) -> str:
    """``path`` if it is a valid absolute path, else raise ``Rejected``."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise Rejected(f"invalid path {path!r}: must be an absolute path")
    if path == "/":
        if allow_root:
            return path
        raise Rejected("invalid path '/': the root cannot be used here")
    if len(path) > MAX_PATH_CHARS or "\x00" in path:
        raise Rejected(f"invalid path: longer than {MAX_PATH_CHARS} characters or has NUL")
    parts = path[1:].split("/")
    for part in parts:
        if part in ("", ".", "..") or len(part) > MAX_NAME_CHARS:
            raise Rejected(f"invalid path {path!r}: bad component {part!r}")
    if "/" + parts[0] == HIDDEN_DIR:
        raise Rejected(f"invalid path {path!r}: {HIDDEN_DIR} is reserved")
    return path


def parent_of(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/", "/a", "/a/b"]``."""
    out = ["/"]
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        out.append("/" + "/".join(parts[:i]))
    return out if path != "/" else []


@dataclass
class Namespace:
    """Full pathname -> metadata. Files map to their chunk-handle lists."""

    files: dict[str, list[int]] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {"/"})
    children: dict[str, set[str]] = field(default_factory=lambda: {"/": set()})

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.dirs

    def is_dir(self, path: str) -> bool:
        return path in self.dirs

    def file(self, path: str) -> list[int]:
        chunks = self.files.get(path)
        if chunks is None:
            raise NotFound(f"no such file: {path}")
        return chunks

    def listing(self, path: str) -> list[tuple[str, bool]]:
        if path not in self.dirs:
            raise NotFound(f"no such directory: {path}")
        base = "" if path == "/" else path
        return [(name, f"{base}/{name}" in self.dirs) for name in sorted(self.children[path])
                if f"{base}/{name}" != HIDDEN_DIR]  # deleted files stay hidden (§4.4)

    # -- changes (called only when applying log records) ------------------------------

    def mkdirs(self, path: str) -> None:
        for p in [*ancestors(path), path]:
            if p in self.dirs:
                continue
            assert p not in self.files, f"{p} is a file"
            self.dirs.add(p)
            self.children[p] = set()
            self.children[parent_of(p)].add(p.rsplit("/", 1)[1])

    def add_file(self, path: str, chunks: list[int]) -> None:
        assert not self.exists(path), path
        self.mkdirs(parent_of(path))
        self.files[path] = chunks
        self.children[parent_of(path)].add(path.rsplit("/", 1)[1])

    def remove(self, path: str) -> None:
        """Remove a file or an empty directory."""
        if path in self.files:
            del self.files[path]
        else:
            assert path in self.dirs and not self.children[path], path
            self.dirs.discard(path)
            del self.children[path]
        self.children[parent_of(path)].discard(path.rsplit("/", 1)[1])

    def subtree(self, path: str) -> tuple[list[str], list[str]]:
        """(files, dirs) at or under ``path``, dirs sorted parents first."""
        prefix = path.rstrip("/") + "/"
        files = sorted(p for p in self.files if p == path or p.startswith(prefix))
        dirs = sorted((p for p in self.dirs if p == path or p.startswith(prefix)),
                      key=lambda p: (p.count("/"), p))
        return files, dirs

    def move(self, src: str, dst: str) -> None:
        """Rename a file or a whole directory tree."""
        files, dirs = self.subtree(src)
        moved_files = {p: self.files[p] for p in files}
        for p in reversed(files):
            self.remove(p)
        for p in sorted(dirs, key=lambda p: (-p.count("/"), p)):
            self.remove(p)
        for p in dirs:
            self.mkdirs(dst + p[len(src):])
        for p, chunks in moved_files.items():
            self.add_file(dst + p[len(src):], chunks)


LockSet = list[tuple[str, bool]]  # (path, exclusive), in acquisition order


class LockTable:
    """Per-path read/write locks, acquired all-or-nothing in the paper's total order."""

    def __init__(self) -> None:
        self._readers: dict[str, int] = {}
        self._writers: set[str] = set()

    @staticmethod
    def lock_set(reads: list[str], writes: list[str]) -> LockSet:
        """Read locks on every ancestor of every named path and on ``reads``; write locks
        on ``writes``. Sorted by depth, then name (§4.1's consistent total order)."""
        modes: dict[str, bool] = {}
        for p in [*reads, *writes]:
            for a in ancestors(p):
                modes.setdefault(a, False)
        for p in reads:
            modes.setdefault(p, False)
        for p in writes:
            modes[p] = True
        return sorted(modes.items(), key=lambda kv: (kv[0].count("/") if kv[0] != "/" else 0,
                                                     kv[0]))

    def try_acquire(self, locks: LockSet) -> bool:
        for path, exclusive in locks:
            if path in self._writers or (exclusive and self._readers.get(path, 0)):
                return False
        for path, exclusive in locks:
            if exclusive:
                self._writers.add(path)
            else:
                self._readers[path] = self._readers.get(path, 0) + 1
        return True

    def release(self, locks: LockSet) -> None:
        for path, exclusive in locks:
            if exclusive:
                assert path in self._writers, path
                self._writers.discard(path)
            else:
                n = self._readers[path] - 1
                assert n >= 0, path
                if n:
                    self._readers[path] = n
                else:
                    del self._readers[path]

    def held(self) -> int:
        return len(self._writers) + sum(self._readers.values())
