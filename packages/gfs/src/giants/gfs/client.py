"""The GFS client library (GFS paper §2.2 "Interface", §2.4, §3): ``GFSClient``.

``GFSClient`` runs the shared operation generators of ``_clientops`` over the real TCP
transport: ``Call`` is a request with a deadline, ``Push`` streams the bytes to the
first chunkserver of the chain (which pipelines them onward, §3.2) and waits for its
one-byte acknowledgement, ``Sleep`` is ``trio.sleep``. It implements the core's
``FileSystem`` capability (``giants.core.interfaces``), which is what Bigtable and
MapReduce program against::

    async with GFSClient(["127.0.0.1:7000", "127.0.0.1:7001"]) as fs:
        await fs.create("/logs/a")
        offset = await fs.record_append("/logs/a", b"record")
        data = await fs.read("/logs/a", 0, 100)

``endpoints``: the master first, then the shadow masters (read-only fallback).
Record append is at-least-once: see ``_clientops`` and the README for the contract.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import trio

from giants.core.errors import ConnectionLost, GiantsError, Rejected, Timeout, Unavailable
from giants.core.interfaces import FileInfo
from giants.core.transport import tcp
from giants.gfs import _clientops as ops
from giants.gfs._messages import (
    Create,
    Delete,
    Fsck,
    FsckReport,
    Mkdir,
    PushHeader,
    Rename,
    Snapshot,
)
from giants.gfs.node import ACK_OK

__all__ = ["GFSClient", "open_filesystem"]

# Bytes per send while pushing; the chunkserver forwards at the same granularity.
PUSH_SEND_BYTES = 256 * 1024
# A push may take longer than a request: allow this much per byte on top of the timeout
# (a 64 MB push gets 6.4 s more at the assumed floor of 10 MB/s).
PUSH_FLOOR_BYTES_PER_S = 10 * 1024 * 1024

_ids = itertools.count(1)


class GFSClient:
    """A GFS client. Use as ``async with``. Safe to share among tasks."""

    def __init__(self, endpoints: list[str], *, client_id: str | None = None,
                 timeout_s: float = 5.0, seed: int | None = None) -> None:
        if not endpoints:
            raise ValueError("GFSClient needs the master's endpoint")
        cid = client_id or f"gfs-client-{os.getpid()}-{next(_ids)}"
        self.state = ops.ClientState(cid, list(endpoints), random.Random(seed),
                                     timeout_s=timeout_s)
        self._client = tcp.Client(cid)

    async def __aenter__(self) -> GFSClient:
        await self._client.__aenter__()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._client.__aexit__(et, e, tb)

    # -- the runner -------------------------------------------------------------------

    async def _run(self, op: ops.Op) -> Any:
        value: Any = None
        exc: BaseException | None = None
        while True:
            try:
                effect = op.throw(exc) if exc is not None else op.send(value)
            except StopIteration as stop:
                return stop.value
            value, exc = None, None
            try:
                if isinstance(effect, ops.Call):
                    value = await self._client.request(effect.target, effect.body,
                                                       timeout=effect.timeout)
                elif isinstance(effect, ops.Push):
                    await self._push(effect)
                elif isinstance(effect, ops.Parallel):
                    value = await self._parallel(effect.calls)
                else:
                    await trio.sleep(effect.seconds)
            except GiantsError as err:
                exc = err

    async def _parallel(self, calls: list[ops.Call]) -> list[Any]:
        results: list[Any] = [None] * len(calls)

        async def one(i: int, call: ops.Call) -> None:
            try:
                results[i] = await self._client.request(call.target, call.body,
                                                        timeout=call.timeout)
            except GiantsError as err:
                results[i] = err

        async with trio.open_nursery() as nursery:
            for i, call in enumerate(calls):
                nursery.start_soon(one, i, call)
        return results

    async def _push(self, p: ops.Push) -> None:
        limit = p.timeout + len(p.data) / PUSH_FLOOR_BYTES_PER_S
        header = PushHeader(p.data_id, len(p.data), p.chain[1:])
        try:
            with trio.fail_after(limit):
                async with self._client.open_stream(p.chain[0], header) as stream:
                    view = memoryview(p.data)
                    for i in range(0, len(view), PUSH_SEND_BYTES):
                        await stream.send_all(view[i:i + PUSH_SEND_BYTES])
                    ack = await stream.receive_some(1)
        except trio.TooSlowError:
            raise Timeout(f"data push to {p.chain[0]} took over {limit:.1f}s") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(f"data push to {p.chain[0]}: {exc}") from None
        if ack != ACK_OK:
            raise Unavailable(f"data push along {p.chain} failed", reason="push_failed")

    # -- the FileSystem capability ----------------------------------------------------

    @property
    def max_record_bytes(self) -> int:
        return self.state.chunk_size // 4 if self.state.chunk_size else 16 * 1024 * 1024

    async def create(self, path: str) -> None:
        await self._run(ops.namespace_op(self.state, Create(path)))

    async def mkdir(self, path: str) -> None:
        await self._run(ops.namespace_op(self.state, Mkdir(path)))

    async def open(self, path: str, *, create: bool = False) -> FileInfo:
        if create:
            try:
                await self.create(path)
            except Rejected:
                pass  # it exists (checked below: it must be a file)
        info = await self.stat(path)
        if info.is_dir:
            raise Rejected(f"is a directory: {path}")
        return info

    async def read(self, path: str, offset: int, length: int) -> bytes:
        data: bytes = await self._run(ops.read(self.state, path, offset, length))
        return data

    async def write(self, path: str, offset: int, data: bytes) -> None:
        await self._run(ops.write(self.state, path, offset, data))

    async def record_append(self, path: str, data: bytes) -> int:
        offset: int = await self._run(ops.record_append(self.state, path, data))
        return offset

    async def list(self, path: str) -> list[FileInfo]:
        entries = await self._run(ops.list_dir(self.state, path))
        base = path.rstrip("/")
        return [FileInfo(f"{base}/{name}", is_dir) for name, is_dir in entries]

    async def stat(self, path: str) -> FileInfo:
        is_dir, size, chunks = await self._run(ops.stat(self.state, path))
        return FileInfo(path, is_dir, size, chunks)

    async def size(self, path: str) -> int:
        size: int = await self._run(ops.file_size(self.state, path))
        return size

    async def delete(self, path: str) -> None:
        await self._run(ops.namespace_op(self.state, Delete(path)))

    async def rename(self, src: str, dst: str) -> None:
        await self._run(ops.namespace_op(self.state, Rename(src, dst)))

    async def snapshot(self, src: str, dst: str) -> None:
        await self._run(ops.namespace_op(self.state, Snapshot(src, dst)))

    async def fsck(self) -> FsckReport:
        report = await self._run(ops.master_call(self.state, Fsck(), read_only=True))
        assert isinstance(report, FsckReport)
        return report


@asynccontextmanager
async def open_filesystem(endpoints: list[str], **options: Any) -> AsyncIterator[GFSClient]:
    """The ``filesystem`` capability's factory (``registry.filesystem("gfs")``)."""
    async with GFSClient(endpoints, **options) as fs:
        yield fs
