"""``SqlDurableStore``: a process's durable namespaces in one SQL table.

This is the store the trio host (``giants.core.host.DurableStore``) persists a
process's ``PersistOp`` effects to before any message of the same call leaves (the
process contract in ``giants.core.process``).

Layout: one table (default ``giants_durable_v1``) with the primary key
``(ns, kt, ik, sk)`` and a ``value`` BLOB. ``kt`` tags the key's type so ``1`` and
``"1"`` stay distinct: ``kt=0`` is an int key held in ``ik`` (``sk = ""``), ``kt=1`` a
str key held in ``sk`` (``ik = 0``). Values are msgpack (``pack_value``); registered
wire messages nest as the codec's ``MESSAGE_EXT`` ext type. As on the wire, tuples come
back as lists. On SQLite it is an ordinary rowid table (the primary key an index beside
it), not ``WITHOUT ROWID``: there every row is a b-tree key, and once one large value (a
state-machine snapshot of megabytes) is stored, inserts next to it copy that whole key
when pages rebalance -- every later commit was ~100x slower. (Databases created with the
``WITHOUT ROWID`` layout keep it and work as before.)

Durability: ``apply(ops)`` is one transaction, committed before it returns. On SQLite
the database runs in WAL mode with ``synchronous=FULL``: every commit fsyncs the WAL,
so an acknowledged ``apply`` survives both a SIGKILL of the process and a power loss
(``NORMAL`` would survive the SIGKILL but may lose the last commits on power loss).

Threads: every database call runs in a worker thread via ``trio.to_thread.run_sync``
with a ``CapacityLimiter(1)``, so the one connection is used by one thread at a time
(the SQLite connection is opened with ``check_same_thread=False`` for that reason).
Calls are not abandoned on cancellation: an ``apply`` that started finishes.

Supported back ends: SQLite (default, a file path) and PostgreSQL (any SQLAlchemy URL
with ``postgresql``). Other dialects get a portable delete-then-insert upsert. Nodes
sharing one database must use distinct ``table`` names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgpack
import trio
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from giants.core.codec import DEFAULT_REGISTRY, MESSAGE_EXT, MessageRegistry
from giants.core.errors import LocalProtocolError
from giants.core.process import Delete, DeleteRange, Durable, PersistOp, Put

__all__ = ["SqlDurableStore", "pack_value", "unpack_value"]

T = TypeVar("T")

KEY_INT = 0
KEY_STR = 1
# SQL BIGINT is signed 64-bit; a larger Python int cannot be stored as a key.
INT_KEY_MIN = -(2**63)
INT_KEY_MAX = 2**63 - 1
DEFAULT_TABLE = "giants_durable_v1"


def pack_value(value: Any, registry: MessageRegistry = DEFAULT_REGISTRY) -> bytes:
    """msgpack bytes of a durable value. Raises ``LocalProtocolError`` if unencodable."""

    def default(obj: Any) -> Any:
        if registry.is_message(obj):
            return msgpack.ExtType(MESSAGE_EXT, registry.encode(obj))
        raise TypeError(f"cannot store a {type(obj).__name__}")

    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True, default=default)
        return packed
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"durable value not storable: {exc}") from exc


def unpack_value(data: bytes, registry: MessageRegistry = DEFAULT_REGISTRY) -> Any:
    """The value ``pack_value`` encoded (tuples come back as lists)."""

    def ext_hook(code: int, payload: bytes) -> Any:
        if code == MESSAGE_EXT:
            return registry.decode(payload)
        return msgpack.ExtType(code, payload)

    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=ext_hook)


def _key_columns(ns: str, key: Any) -> dict[str, Any]:
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise LocalProtocolError(f"durable key must be int or str, got {type(key).__name__}")
    if isinstance(key, int):
        if not INT_KEY_MIN <= key <= INT_KEY_MAX:
            raise LocalProtocolError(f"int key {key} outside the signed 64-bit range")
        return {"ns": ns, "kt": KEY_INT, "ik": key, "sk": ""}
    return {"ns": ns, "kt": KEY_STR, "ik": 0, "sk": key}


def _is_url(url_or_path: str | os.PathLike[str]) -> bool:
    return isinstance(url_or_path, str) and "://" in url_or_path


class SqlDurableStore:
    """A ``DurableStore`` on SQLAlchemy 2 (see the module docstring).

    ``url_or_path`` is a SQLAlchemy URL (``postgresql+psycopg://...``) or a file path
    for SQLite. Nothing touches the database until the first ``load``/``apply``.
    """

    def __init__(
        self,
        url_or_path: str | os.PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        registry: MessageRegistry = DEFAULT_REGISTRY,
        synchronous: str = "FULL",
    ) -> None:
        if _is_url(url_or_path):
            self.url = str(url_or_path)
        else:
            self.url = f"sqlite:///{os.fspath(url_or_path)}"
        if synchronous not in ("FULL", "EXTRA", "NORMAL", "OFF"):
            raise LocalProtocolError(f"unknown SQLite synchronous mode {synchronous!r}")
        self._synchronous = synchronous
        self._registry = registry
        self._meta = MetaData()
        self._table = Table(
            table,
            self._meta,
            Column("ns", String(), primary_key=True),
            Column("kt", SmallInteger(), primary_key=True),
            Column("ik", BigInteger(), primary_key=True),
            Column("sk", String(), primary_key=True),
            Column("value", LargeBinary(), nullable=False),
        )
        self._put_stmt = self._upsert()
        self._delete_stmt = self._statement(Delete("", ""))
        self._range_stmt = self._statement(DeleteRange("", 0, None))
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._closed = False
        self._limiter = trio.CapacityLimiter(1)

    # -- public async API (the DurableStore protocol) --------------------------------

    async def load(self) -> Durable:
        """Everything stored, as a ``Durable``. Raises ``LocalProtocolError`` after
        ``close``; SQLAlchemy errors propagate for a broken database."""
        return await self._run(self.load_sync)

    async def apply(self, ops: Sequence[PersistOp]) -> None:
        """Apply ``ops`` in order as one transaction, durable on return.

        Raises ``LocalProtocolError`` (nothing written) for an unstorable key or value or
        after ``close``; on a database error the transaction rolls back and the error
        propagates, leaving the store as it was before the call.
        """
        if ops:
            await self._run(lambda: self.apply_sync(ops))

    async def close(self) -> None:
        """Release the connection. Idempotent."""
        await trio.to_thread.run_sync(self.close_sync, limiter=self._limiter)

    # -- synchronous versions (for worker threads, tools and benchmarks) --------------

    def load_sync(self) -> Durable:
        conn = self._connection()
        data: dict[str, dict[Any, Any]] = {}
        with conn.begin():
            t = self._table
            for ns, kt, ik, sk, value in conn.execute(select(t.c.ns, t.c.kt, t.c.ik, t.c.sk, t.c.value)):
                key = ik if kt == KEY_INT else sk
                data.setdefault(ns, {})[key] = unpack_value(value, self._registry)
        return Durable(data)

    def apply_sync(self, ops: Sequence[PersistOp]) -> None:
        batches = self._compile(ops)  # encode everything before touching the database
        conn = self._connection()
        with conn.begin():
            for stmt, params in batches:
                conn.execute(stmt, params)

    def close_sync(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- internals --------------------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise LocalProtocolError("store is closed")
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    def _connection(self) -> Connection:
        if self._closed:
            raise LocalProtocolError("store is closed")
        if self._conn is None:
            self._engine = self._make_engine()
            self._meta.create_all(self._engine)
            self._conn = self._engine.connect()
        return self._conn

    def _make_engine(self) -> Engine:
        if not self.url.startswith("sqlite"):
            return create_engine(self.url)
        engine = create_engine(self.url, connect_args={"check_same_thread": False})
        sync_mode = self._synchronous

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync_mode}")
            cur.close()

        return engine

    def _compile(self, ops: Sequence[PersistOp]) -> list[tuple[Any, list[dict[str, Any]]]]:
        """Group consecutive ops of one kind into executemany batches, keeping order."""
        batches: list[tuple[Any, list[dict[str, Any]]]] = []
        last_kind: type | None = None
        for op in ops:
            kind: type = type(op)
            if isinstance(op, Put):
                params = _key_columns(op.ns, op.key)
                params["value"] = pack_value(op.value, self._registry)
            elif isinstance(op, Delete):
                params = _key_columns(op.ns, op.key)
            elif isinstance(op, DeleteRange):
                params = {"ns": op.ns, "lo": op.lo, "hi": INT_KEY_MAX if op.hi is None else op.hi}
                kind = object  # never batched: each range is its own statement
            else:
                raise LocalProtocolError(f"not a persist op: {op!r}")
            if kind is last_kind and batches:
                batches[-1][1].append(params)
            else:
                batches.append((self._cached_statement(op), [params]))
            last_kind = kind
        return self._expand_generic_upserts(batches)

    def _cached_statement(self, op: PersistOp) -> Any:
        if isinstance(op, Put):
            return self._put_stmt
        return self._delete_stmt if isinstance(op, Delete) else self._range_stmt

    def _statement(self, op: PersistOp) -> Any:
        t = self._table
        if isinstance(op, Put):
            return self._upsert()
        key_match = and_(
            t.c.ns == bindparam("ns"),
            t.c.kt == bindparam("kt"),
            t.c.ik == bindparam("ik"),
            t.c.sk == bindparam("sk"),
        )
        if isinstance(op, Delete):
            return delete(t).where(key_match)
        return delete(t).where(
            and_(
                t.c.ns == bindparam("ns"),
                t.c.kt == KEY_INT,
                t.c.ik >= bindparam("lo"),
                t.c.ik < bindparam("hi"),
            )
        )

    def _upsert(self) -> Any:
        t = self._table
        pk = [t.c.ns, t.c.kt, t.c.ik, t.c.sk]
        if self.url.startswith("sqlite"):
            lite = sqlite_insert(t)
            return lite.on_conflict_do_update(index_elements=pk, set_={"value": lite.excluded.value})
        if self.url.startswith("postgresql"):
            pg = postgresql_insert(t)
            return pg.on_conflict_do_update(index_elements=pk, set_={"value": pg.excluded.value})
        return None  # expanded to delete + insert by _expand_generic_upserts

    def _expand_generic_upserts(
        self, batches: list[tuple[Any, list[dict[str, Any]]]]
    ) -> list[tuple[Any, list[dict[str, Any]]]]:
        out: list[tuple[Any, list[dict[str, Any]]]] = []
        delete_one = self._delete_stmt
        for stmt, params in batches:
            if stmt is not None:
                out.append((stmt, params))
                continue
            for p in params:  # one by one: a key may repeat within the batch
                out.append((delete_one, [{k: p[k] for k in ("ns", "kt", "ik", "sk")}]))
                out.append((insert(self._table), [p]))
        return out
