"""Capability interfaces packages program against (DESIGN.md "interfaces").

A package asks the registry for a capability by name (``registry.filesystem("gfs")``)
and programs against the Protocol here, never against another package's internals.
Each engineer adds their capability's Protocol to this module without touching others'.

``FileSystem`` (GFS paper §2.2 "Interface"; Colossus and Tectonic implement the same
one): an append-friendly distributed file system. Every method is async; errors are
from ``giants.core.errors``:

* ``NotFound``    -- the path (or, for create, its parent chain) does not exist;
* ``Rejected``    -- the request is invalid: a malformed path, a path that already
  exists, a read starting past end of file, a write leaving a hole, a record larger than
  ``max_record_bytes``;
* ``Unavailable`` -- the service could not do it now (no replica reachable, master down
  for a mutation); nothing was done, retry later;
* ``IndefiniteError`` (``Timeout`` / ``ConnectionLost``) -- it may or may not have
  happened.

After a raise the namespace is as if the call never started, except that a failed
``write`` or ``record_append`` may have left the region written in part (the GFS
"inconsistent region", §2.7).

``record_append`` is at-least-once: on success the record is in the file, whole and
contiguous, at the returned offset, possibly also elsewhere (an earlier attempt that
failed at some replica), and possibly preceded by padding; readers must tolerate
duplicates and padding (§3.3). A capability provider registers a
``FileSystemFactory``: ``factory(endpoints, **options)`` returns an async context
manager that yields a ``FileSystem``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["FileInfo", "FileSystem", "FileSystemFactory", "Sequencer", "LockService",
           "LockServiceFactory"]


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What ``FileSystem.stat`` / ``list`` report about one path."""

    path: str
    is_dir: bool
    size: int = 0
    chunks: int = 0


@runtime_checkable
class FileSystem(Protocol):
    """A GFS-style file system client. See the module docstring for the error contract."""

    @property
    def max_record_bytes(self) -> int:
        """The largest record ``record_append`` accepts (GFS: a quarter chunk)."""
        ...

    async def create(self, path: str) -> None:
        """Create an empty file (parents are created as needed).
        Raises ``Rejected`` if ``path`` is malformed or exists."""
        ...

    async def open(self, path: str, *, create: bool = False) -> FileInfo:
        """Check ``path`` is a file (creating it if ``create`` and absent) and return
        its info. Raises ``NotFound`` if absent and not ``create``."""
        ...

    async def read(self, path: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer at end of file). Raises
        ``Rejected`` if ``offset`` is past end of file, ``NotFound`` if no such file."""
        ...

    async def write(self, path: str, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` (at most the current size: no holes)."""
        ...

    async def record_append(self, path: str, data: bytes) -> int:
        """Append ``data`` atomically at least once; returns the offset it landed at."""
        ...

    async def list(self, path: str) -> list[FileInfo]:
        """The direct children of directory ``path`` (sizes not filled in)."""
        ...

    async def stat(self, path: str) -> FileInfo:
        """Info about ``path``. Raises ``NotFound`` if absent."""
        ...

    async def delete(self, path: str) -> None:
        """Delete a file or an empty directory (space is reclaimed lazily)."""
        ...

    async def rename(self, src: str, dst: str) -> None:
        """Move ``src`` (file or directory) to ``dst``, which must not exist."""
        ...

    async def snapshot(self, src: str, dst: str) -> None:
        """Copy ``src`` (file or directory tree) to ``dst`` cheaply (copy-on-write)."""
        ...


FileSystemFactory = Callable[..., AbstractAsyncContextManager[FileSystem]]
"""``factory(endpoints: list[str], **options: Any)`` -> ``async with`` -> FileSystem."""


# -- LockService (Chubby paper §2.1, §2.4) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Sequencer:
    """A fencing token (Chubby §2.4): the lock's name, its mode (``"x"`` exclusive or
    ``"s"`` shared) and its lock generation, which grows every time the lock goes from
    free to held. A server given a sequencer asks ``check_sequencer`` (or compares
    generations) before acting for the holder, so a stale holder is refused."""

    name: str
    mode: str
    generation: int


@runtime_checkable
class LockService(Protocol):
    """A coarse-grained lock service client over one session (Chubby; ZooKeeper recipes).

    Names are slash-separated (``"bigtable/master"``); the provider maps them into its
    namespace and creates parents as needed. Errors are from ``giants.core.errors``:
    ``Rejected`` for a malformed name or a call the session may not make (permission,
    releasing a lock not held, an expired session: ``detail["reason"]`` says which),
    ``Timeout`` when ``acquire`` did not get the lock within ``timeout_s`` or the service
    did not answer (indefinite: the call may have happened). A failed call changes
    nothing the caller can observe, except that an indefinite ``acquire`` may have taken
    the lock, which the session then holds until ``release`` or the session ends.
    """

    async def acquire(self, name: str, *, exclusive: bool = True,
                      timeout_s: float | None = None) -> Sequencer:
        """Block until the lock is held; returns its fencing token."""
        ...

    async def release(self, name: str) -> None:
        """Release a lock this session holds."""
        ...

    async def check_sequencer(self, sequencer: Sequencer) -> bool:
        """True while ``sequencer``'s lock is still held at that generation and mode."""
        ...

    async def read(self, name: str) -> bytes | None:
        """A small file's contents (None if it does not exist)."""
        ...

    async def write(self, name: str, data: bytes) -> None:
        """Create or overwrite a small file."""
        ...

    async def watch(self, name: str) -> None:
        """Return when ``name``'s contents, children or lock next change."""
        ...

    def leadership(self, name: str, identity: str) -> AbstractAsyncContextManager[Sequencer]:
        """Leader election: wait to hold ``name`` exclusively, publish ``identity`` in it,
        yield the sequencer; leave by exiting the context (the lock is released)."""
        ...

    async def leader(self, name: str) -> str | None:
        """The identity the current leader of ``name`` published (None if none)."""
        ...


LockServiceFactory = Callable[..., AbstractAsyncContextManager[LockService]]
"""``factory(endpoints: list[str] | str, **options: Any)`` -> ``async with`` -> LockService."""
