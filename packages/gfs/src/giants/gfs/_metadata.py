"""Master metadata and the operation log's records (GFS paper §2.6, §2.6.3, §4.3, §4.4).

``Metadata`` is everything the master persists: the namespace, each file's chunk
handles, each chunk's version number and the next free chunk handle. Chunk *locations*
are deliberately absent: the master learns them from chunkservers (§2.6.2).

Every change is an operation-log record (a plain dict) applied by ``apply``; the
master, the shadow masters (§5.1.3) and recovery all use this one function, so a
replayed log always rebuilds the same state. ``to_checkpoint`` / ``from_checkpoint``
give the compact form written every few hundred records, so recovery replays only the
log tail (§2.6.3). Chunk reference counts for copy-on-write snapshots (§3.4) are derived
from the file table, never stored.

Records (``op`` and fields)::

    mkdir(path)  create(path)  delete(path, hidden, at)  rmdir(path)  rename(src, dst)
    snapshot(src, dst)  add_chunk(path, handle)  alloc(next)  version(handle, version)
    attempt(handle, version)
    cow(path, index, old, new, version)  reclaim(path)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from giants.gfs._namespace import HIDDEN_DIR, Namespace

__all__ = ["Metadata"]


@dataclass
class Metadata:
    ns: Namespace = field(default_factory=Namespace)
    versions: dict[int, int] = field(default_factory=dict)   # handle -> version
    # The highest version a lease grant *tried* (logged before any replica hears of
    # it, so never handed out twice); ``versions`` holds the last grant that completed.
    # No mutation happens under an incomplete grant, so a replica whose version is in
    # ``versions[h] .. attempts[h]`` holds exactly the current data.
    attempts: dict[int, int] = field(default_factory=dict)
    refs: dict[int, int] = field(default_factory=dict)       # handle -> files using it
    deleted_at: dict[str, float] = field(default_factory=dict)  # hidden path -> time
    next_handle: int = 1
    applied: int = 0  # sequence number of the last record applied

    # -- the log ----------------------------------------------------------------------

    def apply(self, seq: int, rec: dict[str, Any]) -> None:
        """Apply record ``seq`` (must be the next one)."""
        assert seq == self.applied + 1, f"log gap: applying {seq} after {self.applied}"
        getattr(self, "_op_" + rec["op"])(rec)
        self.applied = seq

    def _op_mkdir(self, rec: dict[str, Any]) -> None:
        self.ns.mkdirs(rec["path"])

    def _op_create(self, rec: dict[str, Any]) -> None:
        self.ns.add_file(rec["path"], [])

    def _op_delete(self, rec: dict[str, Any]) -> None:
        self.ns.move(rec["path"], rec["hidden"])
        self.deleted_at[rec["hidden"]] = rec["at"]

    def _op_rmdir(self, rec: dict[str, Any]) -> None:
        self.ns.remove(rec["path"])

    def _op_rename(self, rec: dict[str, Any]) -> None:
        self.ns.move(rec["src"], rec["dst"])

    def _op_snapshot(self, rec: dict[str, Any]) -> None:
        src, dst = rec["src"], rec["dst"]
        files, dirs = self.ns.subtree(src)
        for d in dirs:
            self.ns.mkdirs(dst + d[len(src):])
        for f in files:
            chunks = list(self.ns.files[f])
            self.ns.add_file(dst + f[len(src):], chunks)
            for h in chunks:
                self.refs[h] += 1

    def _op_add_chunk(self, rec: dict[str, Any]) -> None:
        h = rec["handle"]
        assert h not in self.versions, h
        self.ns.files[rec["path"]].append(h)
        self.versions[h] = 0
        self.refs[h] = 1
        self.next_handle = max(self.next_handle, h + 1)

    def _op_alloc(self, rec: dict[str, Any]) -> None:
        self.next_handle = max(self.next_handle, rec["next"])

    def _op_version(self, rec: dict[str, Any]) -> None:
        h = rec["handle"]
        if h in self.versions:
            self.versions[h] = max(self.versions[h], rec["version"])
            if self.attempts.get(h, 0) <= self.versions[h]:
                self.attempts.pop(h, None)

    def _op_attempt(self, rec: dict[str, Any]) -> None:
        h = rec["handle"]
        if h in self.versions:
            self.attempts[h] = max(self.attempts.get(h, 0), rec["version"])

    def top_version(self, h: int) -> int:
        """The highest version any replica of ``h`` may hold."""
        return max(self.versions.get(h, 0), self.attempts.get(h, 0))

    def _op_cow(self, rec: dict[str, Any]) -> None:
        chunks = self.ns.files[rec["path"]]
        old, new = rec["old"], rec["new"]
        assert chunks[rec["index"]] == old
        chunks[rec["index"]] = new
        self.versions[new] = rec["version"]
        self.refs[new] = 1
        self.next_handle = max(self.next_handle, new + 1)
        self._unref(old)

    def _op_reclaim(self, rec: dict[str, Any]) -> None:
        path = rec["path"]
        for h in self.ns.files[path]:
            self._unref(h)
        self.ns.remove(path)
        self.deleted_at.pop(path, None)

    def _unref(self, h: int) -> None:
        n = self.refs[h] - 1
        if n:
            self.refs[h] = n
        else:
            del self.refs[h]
            del self.versions[h]
            self.attempts.pop(h, None)

    # -- queries ----------------------------------------------------------------------

    def live_handles(self) -> set[int]:
        """Chunks of files not deleted (re-replication serves these first)."""
        hidden = HIDDEN_DIR + "/"
        return {h for p, cs in self.ns.files.items() if not p.startswith(hidden) for h in cs}

    # -- checkpoints ------------------------------------------------------------------

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "next_handle": self.next_handle,
            "dirs": sorted(self.ns.dirs),
            "files": [[p, list(cs)] for p, cs in sorted(self.ns.files.items())],
            "versions": [[h, v] for h, v in sorted(self.versions.items())],
            "attempts": [[h, v] for h, v in sorted(self.attempts.items())],
            "deleted_at": [[p, t] for p, t in sorted(self.deleted_at.items())],
        }

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any]) -> Metadata:
        md = cls(applied=int(data["applied"]), next_handle=int(data["next_handle"]))
        for d in sorted(data["dirs"], key=lambda p: (p.count("/"), p)):
            md.ns.mkdirs(d)
        for p, chunks in data["files"]:
            md.ns.add_file(p, list(chunks))
            for h in chunks:
                md.refs[h] = md.refs.get(h, 0) + 1
        md.versions = {int(h): int(v) for h, v in data["versions"]}
        md.attempts = {int(h): int(v) for h, v in data.get("attempts", [])}
        md.deleted_at = {p: float(t) for p, t in data["deleted_at"]}
        return md
