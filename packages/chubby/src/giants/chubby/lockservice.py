"""The ``lock_service`` capability on Chubby (``giants.core.interfaces.LockService``):
what Bigtable, GFS/Colossus master election and others get from
``registry.lock_service("chubby")`` (Burrows, OSDI 2006, §2.1 "primary election",
§2.4 "sequencers").

A name ``a/b`` is the node ``/ls/<cell>/a/b``; parents are created as directories on
first use. Each name gets one handle per session, opened with read, write and lock
rights and subscribed to ``modified``, ``child`` and ``lock`` events, and kept open so
reads come from the client cache. ``leadership`` is the paper's election recipe:
acquire the lock, write one's identity into the file, hand out the sequencer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from giants.chubby.client import ChubbyClient, ClientOptions
from giants.core.errors import NotFound, Rejected, Timeout
from giants.core.interfaces import Sequencer

__all__ = ["ChubbyLockService", "connect"]


class ChubbyLockService:
    """A ``LockService`` over one ``ChubbyClient`` session."""

    def __init__(self, client: ChubbyClient, cell: str = "cell") -> None:
        self.client = client
        self.root = f"/ls/{cell}"
        self._handles: dict[str, int] = {}

    def path(self, name: str) -> str:
        name = name.strip("/")
        if not name:
            raise Rejected("empty lock service name", reason="bad_path")
        return f"{self.root}/{name}"

    async def _handle(self, name: str) -> int:
        path = self.path(name)
        if path not in self._handles:
            parts = path.split("/")
            for i in range(4, len(parts)):
                h = await self.client.open("/".join(parts[:i]), "r", create="dir")
                await self.client.close(h)
            self._handles[path] = await self.client.open(
                path, "rwl", create="file", events=("modified", "child", "lock"))
        return self._handles[path]

    async def acquire(self, name: str, *, exclusive: bool = True,
                      timeout_s: float | None = None) -> Sequencer:
        h = await self._handle(name)
        with trio.move_on_after(timeout_s if timeout_s is not None else float("inf")):
            seq = await self.client.acquire(h, "x" if exclusive else "s")
            return Sequencer(seq[0], seq[1], int(seq[2]))
        raise Timeout(f"lock {name!r} not acquired within {timeout_s}s")

    async def release(self, name: str) -> None:
        await self.client.release(await self._handle(name))

    async def check_sequencer(self, sequencer: Sequencer) -> bool:
        return bool(await self.client.check_sequencer(
            [sequencer.name, sequencer.mode, sequencer.generation]))

    async def read(self, name: str) -> bytes | None:
        path = self.path(name)
        if path not in self._handles and await self.client.lookup(path) is None:
            return None
        try:
            data, _ = await self.client.read(await self._handle(name))
        except NotFound:
            return None
        return bytes(data)

    async def write(self, name: str, data: bytes) -> None:
        await self.client.write(await self._handle(name), data)

    async def watch(self, name: str) -> None:
        path = self.path(name)
        await self._handle(name)
        events = self.client.events()
        async for ev in events:
            if ev[1] == path and ev[0] in ("modified", "child", "lock", "invalid"):
                return

    @asynccontextmanager
    async def leadership(self, name: str, identity: str) -> AsyncIterator[Sequencer]:
        seq = await self.acquire(name)
        try:
            await self.write(name, identity.encode())
            yield seq
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5.0):
                await self.release(name)

    async def leader(self, name: str) -> str | None:
        data = await self.read(name)
        return data.decode("utf-8", "replace") if data else None


@asynccontextmanager
async def connect(endpoints: list[str] | str, *, user: str = "anonymous", cell: str = "cell",
                  **options: Any) -> AsyncIterator[ChubbyLockService]:
    """The registered factory: ``async with connect(endpoints) as locks``."""
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",") if e]
    async with ChubbyClient(endpoints, user=user, options=ClientOptions(**options)) as client:
        yield ChubbyLockService(client, cell)
