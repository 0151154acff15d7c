"""The coordination adapter other packages get from the registry (``coordination`` and
``lock_service`` capabilities, name ``zookeeper``): the ZooKeeper paper's section 2.4
recipes built on the trio client.

    factory = registry.get("coordination", "zookeeper")
    async with factory(["127.0.0.1:2181", ...]) as coord:
        async with coord.lock("tablet-7"):                 # herd-free lock
            ...
        async with coord.leadership("master", "node-3"):  # leader election
            ...
        await coord.write("/config/x", b"...")              # small files
        data, version = await coord.read("/config/x")
        await coord.watch("/config/x")                      # one change, once

* ``lock(name)``: "locks without herd effect" -- an ephemeral sequential node under
  ``/locks/<name>``; the holder is the lowest; every other waiter watches only its
  predecessor. The session ending (crash, expiry) releases the lock.
* ``leadership(name, identity)``: the same construction under ``/election/<name>``,
  with the identity as node data; ``leader(name)`` reads who leads.
* ``watch(path)``: returns after the next change to ``path`` (created, changed or
  deleted), which the one-shot watch guarantees is seen once.
* ``read`` / ``write(path, data, version=-1)``: small files with optimistic versions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from giants.zookeeper._jute import Err
from giants.zookeeper.client import ZkClient, ZkError

__all__ = ["Coordination", "connect"]


class Coordination:
    """Recipes over one ZooKeeper session. Build it with ``connect``."""

    def __init__(self, zk: ZkClient) -> None:
        self.zk = zk

    @property
    def session_id(self) -> int:
        return self.zk.session_id

    @asynccontextmanager
    async def _queue_head(self, root: str, data: bytes) -> AsyncIterator[str]:
        """Wait until our ephemeral sequential node under ``root`` is the lowest."""
        await self.zk.ensure_path(root)
        me = await self.zk.create(f"{root}/n-", data, ephemeral=True, sequential=True)
        mine = me.rsplit("/", 1)[1]
        try:
            while True:
                kids, _ = await self.zk.children(root)
                ahead = sorted(k for k in kids if k < mine)
                if not ahead:
                    break
                stat, event = await self.zk.exists(f"{root}/{ahead[-1]}", watch=True)
                if stat is not None and event is not None:
                    await event.wait()
            yield me
        finally:
            try:
                await self.zk.delete(me)
            except ZkError as exc:
                if exc.err != Err.NO_NODE:
                    raise

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[None]:
        async with self._queue_head(f"/locks/{name}", b""):
            yield

    @asynccontextmanager
    async def leadership(self, name: str, identity: str) -> AsyncIterator[None]:
        async with self._queue_head(f"/election/{name}", identity.encode()):
            yield

    async def leader(self, name: str) -> str | None:
        root = f"/election/{name}"
        await self.zk.sync(root)  # reads are local; sync makes this one current
        try:
            kids, _ = await self.zk.children(root)
        except ZkError as exc:
            if exc.err == Err.NO_NODE:
                return None
            raise
        for kid in sorted(kids):
            try:
                info, _ = await self.zk.get(f"{root}/{kid}")
            except ZkError as exc:
                if exc.err == Err.NO_NODE:
                    continue
                raise
            return info.data.decode()
        return None

    async def watch(self, path: str) -> None:
        _, event = await self.zk.exists(path, watch=True)
        assert event is not None
        await event.wait()

    async def read(self, path: str) -> tuple[bytes, int]:
        """``(data, version)``; raises ``ZkError(NoNode)`` if absent."""
        await self.zk.sync(path)
        info, _ = await self.zk.get(path)
        return info.data, info.stat.version

    async def write(self, path: str, data: bytes, version: int = -1) -> int:
        """Create (with parents) or overwrite; returns the new version. With
        ``version >= 0`` the write happens only if the file is at that version
        (``ZkError(BadVersion)`` otherwise)."""
        try:
            return (await self.zk.set(path, data, version)).version
        except ZkError as exc:
            if exc.err != Err.NO_NODE or version != -1:
                raise
        parent = path.rsplit("/", 1)[0]
        if parent:
            await self.zk.ensure_path(parent)
        await self.zk.create(path, data)
        return 0


@asynccontextmanager
async def connect(endpoints: Sequence[str] | str, **options: Any) -> AsyncIterator[Coordination]:
    """The registered factory: ``async with connect(endpoints) as coord``."""
    async with ZkClient(endpoints, **options) as zk:
        yield Coordination(zk)
