"""The invalidation daemon process (mcsqueal's role), a thin trio loop over ``SquealCore``.

Scaling Memcache at Facebook §4.1: tail the database's commit log (``LogRead`` on the
database node), and for every round of entries send each front-end cluster's router one
pipelined batch of ``delete`` commands (one write carrying many deletes: the paper's
batching into fewer packets). A router that fails is retried every ``RESEND_AFTER_S``
until it acknowledges -- a round is complete only when every cluster has it. The
position is durable (``SqlDurableStore`` in the data directory) so a restarted daemon
resumes where it stopped, replaying the unfinished round (deletes are idempotent).

After each round the daemon publishes its position as the cache key
``__squeal__:position`` in every cluster, so demos and tests can tell when an entry has
been processed (and measure the staleness window) with a plain ``get``.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import trio

from giants.core.errors import GiantsError
from giants.core.process import Put
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.transport import tcp
from giants.memcache._squeal import ROUND_MAX_ENTRIES, Batch, SquealCore
from giants.memcache.client import MemcacheClient, MemcacheError
from giants.memcache.dbnode import DbClient

__all__ = ["squeal_main", "POSITION_KEY"]

log = logging.getLogger("giants.memcache.squeal")

POSITION_KEY: Final = b"__squeal__:position"
POLL_INTERVAL_S: Final = 0.02


async def squeal_main(config: dict[str, Any], *,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """``Role.main`` of the ``squeal`` role: ``name``, ``db`` (address), ``targets``
    (cluster name -> router ``host:port``), ``data_dir``, ``markers`` (bool)."""
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    store = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url)
    targets: dict[str, str] = dict(config["targets"])
    try:
        durable = await store.load()
        core = SquealCore(list(targets), int(durable.get("squeal", "position", 0)),
                          markers=bool(config.get("markers", False)))
        clients = {t: MemcacheClient(a) for t, a in targets.items()}
        async with tcp.Client(str(config.get("name", "squeal"))) as net:
            db = DbClient(net, str(config["db"]))
            task_status.started()
            await _loop(core, db, clients, store)
    finally:
        with trio.CancelScope(shield=True):
            await store.close()
        data_dir.unlock()


async def _loop(core: SquealCore, db: DbClient, clients: dict[str, MemcacheClient],
                store: SqlDurableStore) -> None:
    while True:
        after = core.next_read()
        if after is not None:
            try:
                entries = await db.log_after(after, ROUND_MAX_ENTRIES)
            except GiantsError as exc:
                log.warning("log read failed: %s", exc)
                core.read_failed()
                await trio.sleep(POLL_INTERVAL_S)
                continue
            batches = core.on_entries(entries.entries, trio.current_time())
            if not batches:
                await trio.sleep(POLL_INTERVAL_S)
                continue
        else:
            batches = core.due(trio.current_time())
            if not batches:
                await trio.sleep(POLL_INTERVAL_S)
                continue
        await _send_round(core, clients, batches, store)


async def _send_round(core: SquealCore, clients: dict[str, MemcacheClient],
                      batches: list[Batch], store: SqlDurableStore) -> None:
    completed = [False]

    async def send(batch: Batch) -> None:
        try:
            await clients[batch.target].delete_many([k.encode() for k in batch.keys])
        except MemcacheError as exc:
            log.warning("deletes to %s failed (will resend): %s", batch.target, exc)
            return
        if core.on_ack(batch.target, batch.round_id):
            completed[0] = True

    async with trio.open_nursery() as nursery:
        for batch in batches:
            nursery.start_soon(send, batch)
    if completed[0]:
        await store.apply([Put("squeal", "position", core.position)])
        await _publish(clients, core.position)


async def _publish(clients: dict[str, MemcacheClient], position: int) -> None:
    async def one(client: MemcacheClient) -> None:
        try:
            await client.set(POSITION_KEY, b"%d" % position)
        except MemcacheError as exc:
            log.info("could not publish position to %s: %s", client.address, exc)

    async with trio.open_nursery() as nursery:
        for client in clients.values():
            nursery.start_soon(one, client)
