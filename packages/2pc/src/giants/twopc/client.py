"""``TxnClient``: serializable multi-shard transactions over 2PC and strict 2PL.

::

    async with TxnClient(coordinators, shards) as db:
        async with db.transaction() as txn:        # commits on exit
            balance = await txn.get("alice") or 0
            await txn.put("alice", balance - 10)
            await txn.put("bob", 10)
        # raises TxnAborted if it aborted: none of its writes took effect

        await db.run(transfer)                     # retries aborted attempts

Reads and writes go straight to the key's shard (``shard_for``) and wait there for
their lock; the commit goes to the coordinator, which runs 2PC over the shards the
transaction touched. ``coordinators`` and ``shards`` are addresses in plan order
(``coord-i``, ``shard-i``).

Errors: ``TxnAborted`` (definite: nothing of the transaction happened -- a deadlock
victim, wounded, a NO vote, a lock wait timeout); ``Timeout`` from ``commit`` when no
coordinator answered within ``commit_timeout_s`` -- the outcome is unknown (it is
decided, and retrying ``CommitTxn`` later learns it). An exception raised inside the
``async with`` block rolls the transaction back and propagates.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from giants.core.errors import (
    DefiniteError,
    IndefiniteError,
    LocalProtocolError,
    NotLeader,
    Timeout,
    TxnAborted,
)
from giants.core.transport import StreamClient, tcp
from giants.twopc._messages import (
    CommitTxn,
    ReadResult,
    StatusQuery,
    StatusReply,
    TxnOutcome,
    TxnRead,
    TxnRollback,
    TxnWrite,
)
from giants.twopc._sharding import coordinator_names, shard_for, shard_names

__all__ = ["TxnClient", "Transaction"]

T = TypeVar("T")
# A commit attempt's wait before trying the next coordinator replica.
COMMIT_ATTEMPT_S = 1.0


class Transaction:
    """One attempt of a transaction; made by ``TxnClient.transaction``."""

    def __init__(self, client: TxnClient, txn: str, ts: float) -> None:
        self.client = client
        self.txn = txn
        self.ts = ts
        self.participants: list[str] = []
        self.seqs: dict[str, int] = {}          # shard -> operations run there
        self.finished = False

    async def get(self, key: str) -> Any:
        """The value (None if absent), read under a shared lock held to the end."""
        reply = await self._op(key, lambda seq: TxnRead(self.txn, self.ts, key, seq))
        assert isinstance(reply, ReadResult)
        return reply.value if reply.found else None

    async def put(self, key: str, value: Any) -> None:
        await self._op(key, lambda seq: TxnWrite(self.txn, self.ts, key, value, False, seq))

    async def delete(self, key: str) -> None:
        await self._op(key, lambda seq: TxnWrite(self.txn, self.ts, key, None, True, seq))

    async def _op(self, key: str, make: Callable[[int], Any]) -> Any:
        if self.finished:
            raise LocalProtocolError(f"{self.txn} already finished")
        shard = shard_for(key, self.client.shard_ids)
        if shard not in self.participants:
            self.participants.append(shard)
        address = self.client.address_of[shard]
        seq = self.seqs.get(shard, 0) + 1
        self.seqs[shard] = seq
        try:
            return await self.client.rpc.request(address, make(seq),
                                                 timeout=self.client.op_timeout_s)
        except TxnAborted:
            await self.rollback()
            raise
        except IndefiniteError as exc:
            await self.rollback()
            raise TxnAborted(f"{self.txn}: {shard} did not answer ({exc}); rolled back") from exc

    async def commit(self) -> None:
        """Commit through 2PC. Raises ``TxnAborted`` or ``Timeout`` (see module docs)."""
        if self.finished:
            raise LocalProtocolError(f"{self.txn} already finished")
        self.finished = True
        if not self.participants:
            return
        client = self.client
        body = CommitTxn(self.txn, list(self.participants),
                         [self.seqs[p] for p in self.participants])
        order = list(client.coordinators)
        with trio.move_on_after(client.commit_timeout_s):
            i = 0
            while True:
                address = order[i % len(order)]
                try:
                    reply = await client.rpc.request(address, body, timeout=COMMIT_ATTEMPT_S)
                except NotLeader as exc:
                    hinted = client.address_of.get(exc.hint or "")
                    i = order.index(hinted) if hinted in order else i + 1
                    if hinted is None:
                        await trio.sleep(0.05)      # an election is under way
                    continue
                except IndefiniteError:
                    i += 1
                    continue
                assert isinstance(reply, TxnOutcome)
                if not reply.committed:
                    raise TxnAborted(f"{self.txn} aborted: {reply.reason}")
                return
        raise Timeout(f"{self.txn}: no coordinator answered within {client.commit_timeout_s}s;"
                      " the outcome is unknown")

    async def rollback(self) -> None:
        """Abandon the transaction at every shard it touched (best effort)."""
        if self.finished:
            return
        self.finished = True
        for shard in self.participants:
            try:
                await self.client.rpc.request(self.client.address_of[shard],
                                              TxnRollback(self.txn), timeout=1.0)
            except (DefiniteError, IndefiniteError):
                pass            # the shard aborts idle transactions on its own


class TxnClient:
    def __init__(self, coordinators: list[str], shards: list[str], *,
                 op_timeout_s: float = 10.0, commit_timeout_s: float = 30.0,
                 client_id: str | None = None, rpc: StreamClient | None = None) -> None:
        """``rpc``: the transport client to use (default a TCP one; tests pass a
        ``giants.core.transport.memory.Client``)."""
        if not coordinators or not shards:
            raise LocalProtocolError("TxnClient needs coordinator and shard addresses")
        self.coordinators = list(coordinators)
        self.shard_ids = shard_names(len(shards))
        self.address_of = dict(zip(self.shard_ids, shards, strict=True))
        self.address_of.update(zip(coordinator_names(len(coordinators)), coordinators,
                                   strict=True))
        self.op_timeout_s = op_timeout_s
        self.commit_timeout_s = commit_timeout_s
        self.client_id = client_id or f"txn-{uuid.uuid4().hex[:10]}"
        self.rpc: StreamClient = rpc if rpc is not None else tcp.Client(self.client_id)
        self._n = 0

    async def __aenter__(self) -> TxnClient:
        await self.rpc.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.rpc.__aexit__(*exc)

    def begin(self, ts: float | None = None) -> Transaction:
        """A new transaction (``ts``: keep an aborted attempt's timestamp when retrying)."""
        self._n += 1
        return Transaction(self, f"{self.client_id}-{self._n}",
                           time.time() if ts is None else ts)

    @asynccontextmanager
    async def transaction(self, ts: float | None = None) -> AsyncIterator[Transaction]:
        txn = self.begin(ts)
        try:
            yield txn
        except BaseException:
            with trio.CancelScope(shield=True):
                await txn.rollback()
            raise
        await txn.commit()

    async def run(self, fn: Callable[[Transaction], Awaitable[T]], *, attempts: int = 20) -> T:
        """Run ``fn(txn)`` and commit, retrying aborted attempts with the first attempt's
        timestamp (so wait-die / wound-wait let it through eventually)."""
        ts = time.time()
        for attempt in range(attempts):
            try:
                async with self.transaction(ts) as txn:
                    result = await fn(txn)
                return result
            except TxnAborted:
                if attempt == attempts - 1:
                    raise
                await trio.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    async def status(self, address: str, timeout: float = 2.0) -> StatusReply:
        reply = await self.rpc.request(address, StatusQuery(), timeout=timeout)
        assert isinstance(reply, StatusReply)
        return reply
