"""The database process (master or replica) and the client web servers use to reach it.

Scaling Memcache at Facebook §3.1/§5: the storage of record. ``db_main`` hosts the
sans-I/O ``DbProcess`` with the core's trio host (``run_process``) on a giants TCP
endpoint, its rows and commit log durable in SQLite through SQLAlchemy
(``SqlDurableStore``) in its data directory, so a killed database restarts with every
acknowledged write. A replica's config names its ``upstream`` master and its address.

``DbClient`` is the web servers' (and the daemon's) handle: ``read``, ``write``,
``log_after`` over the giants transport. Errors are the core's: ``Timeout`` /
``ConnectionLost`` (indefinite) and ``Rejected`` for a write sent to a replica.
"""

from __future__ import annotations

from typing import Any, Final

import trio

from giants.core.errors import Rejected
from giants.core.host import run_process
from giants.core.process import Durable
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.transport import StreamClient, tcp
from giants.memcache._db import DbProcess
from giants.memcache._messages import (
    DbRead,
    DbRefused,
    DbValue,
    DbWrite,
    DbWritten,
    LogEntries,
    LogRead,
)

__all__ = ["db_main", "DbClient"]

DB_TICK_S: Final = 0.02
DB_TIMEOUT_S: Final = 2.0


async def db_main(config: dict[str, Any], *,
                  task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """``Role.main`` of the ``db`` role: ``name``, ``listen``, ``data_dir``, optional
    ``upstream`` (the master's node name) and ``upstream_address``."""
    node_id = str(config["name"])
    upstream = config.get("upstream")
    peers = {upstream: config["upstream_address"]} if upstream else {}
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    store = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url)

    def factory(durable: Durable) -> DbProcess:
        return DbProcess(durable, upstream=upstream)

    try:
        async with tcp.serve(node_id, listen=config["listen"], peers=peers) as ep:
            await run_process(factory, node_id=node_id, endpoint=ep, store=store,
                              tick_s=float(config.get("tick_s", DB_TICK_S)),
                              task_status=task_status)
    finally:
        with trio.CancelScope(shield=True):
            await store.close()
        data_dir.unlock()


class DbClient:
    """Requests to one database node through a shared ``tcp.Client``."""

    def __init__(self, net: StreamClient, address: str, *, timeout_s: float = DB_TIMEOUT_S
                 ) -> None:
        self.net = net
        self.address = address
        self.timeout_s = timeout_s

    async def read(self, key: str) -> tuple[int, str | None]:
        reply = await self.net.request(self.address, DbRead(key), timeout=self.timeout_s)
        assert isinstance(reply, DbValue), reply
        return reply.version, reply.value

    async def write(self, key: str, value: str | None) -> DbWritten:
        """Raises ``Rejected`` if this node is a replica."""
        reply = await self.net.request(self.address, DbWrite(key, value), timeout=self.timeout_s)
        if isinstance(reply, DbRefused):
            raise Rejected(reply.reason)
        assert isinstance(reply, DbWritten), reply
        return reply

    async def log_after(self, after: int, limit: int) -> LogEntries:
        reply = await self.net.request(self.address, LogRead(after, limit),
                                       timeout=self.timeout_s)
        assert isinstance(reply, LogEntries), reply
        return reply
