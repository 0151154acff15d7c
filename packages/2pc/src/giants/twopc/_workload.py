"""A simulated transaction client: random multi-shard transactions, recorded for checkers.

A sans-I/O ``Process`` for the simulator. Each transaction reads and writes a few random
keys (one operation at a time, each to the key's shard), then asks a coordinator to
commit. Every write carries a value unique to (transaction, key), so checkers can tell
which transaction's write a read saw. Outcomes:

* ``committed`` / ``aborted`` -- the coordinator said so (or a shard aborted it before
  commit was asked: deadlock victim, wounded, lock wait timeout; the client then rolls
  back at every shard it touched);
* ``unknown`` -- commit was asked and no answer came before ``commit_deadline_s`` (the
  coordinator was down or blocked): the transaction may have committed.

An aborted transaction is retried (up to ``max_attempts``) under a new id with its
original timestamp, as wait-die and wound-wait need to avoid starvation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import NotLeader, TxnAborted
from giants.core.process import Io
from giants.twopc._messages import (
    CommitTxn,
    ReadResult,
    TxnOutcome,
    TxnRead,
    TxnRollback,
    TxnWrite,
    WriteAck,
)
from giants.twopc._sharding import shard_for

__all__ = ["TxnRecord", "TxnWorkloadClient", "WorkloadSpec"]


@dataclass
class TxnRecord:
    txn: str
    client: str
    ts: float
    ops: list[tuple[str, str, Any]] = field(default_factory=list)  # ("r"|"w", key, value)
    writes: dict[str, Any] = field(default_factory=dict)    # key -> last value written
    status: str = "pending"                                  # committed | aborted | unknown
    participants: list[str] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)       # shard -> operations sent
    started: float = 0.0
    finished: float | None = None
    reason: str = ""


@dataclass
class WorkloadSpec:
    keys: list[str]
    txns: int = 5
    ops: tuple[int, int] = (2, 4)
    read_fraction: float = 0.5
    think_s: tuple[float, float] = (0.0, 0.05)
    op_timeout_s: float = 2.0
    commit_retry_s: float = 1.0
    commit_deadline_s: float = 60.0
    max_attempts: int = 8
    # A fixed list of operations (("r"|"w", key), ...) for every transaction instead of
    # random ones: scripted scenarios.
    fixed_plan: list[tuple[str, str]] | None = None


class TxnWorkloadClient:
    """See the module docstring. ``records`` is shared with the test (appended to)."""

    def __init__(self, name: str, coordinators: list[str], shards: list[str],
                 spec: WorkloadSpec, records: list[TxnRecord]) -> None:
        self.name = name
        self.coordinators = list(coordinators)
        self.shards = list(shards)
        self.spec = spec
        self.records = records
        self.done = 0
        self._n = 0
        self._attempt = 0
        self._ts = 0.0
        self._plan: list[tuple[str, str]] = []
        self._rec: TxnRecord | None = None
        self._step = 0
        self._waiting: int | None = None      # msg id of the outstanding request
        self._deadline = 0.0
        self._next_at = 0.0
        self._coord = 0
        self._commit_started = 0.0

    @property
    def finished(self) -> bool:
        return self.done >= self.spec.txns and self._rec is None

    def start(self, io: Io) -> None:
        self._next_at = io.now + io.rng.uniform(*self.spec.think_s)

    def tick(self, io: Io) -> None:
        rec = self._rec
        if rec is None:
            if self.done < self.spec.txns and io.now >= self._next_at:
                self._begin(io)
            return
        if self._waiting is None or io.now < self._deadline:
            return
        if rec.status == "committing":
            if io.now - self._commit_started >= self.spec.commit_deadline_s:
                self._end(io, "unknown", "no commit answer before the deadline")
            else:
                self._coord = (self._coord + 1) % len(self.coordinators)
                self._send_commit(io)
        else:
            self._abort(io, "operation timed out")

    def receive(self, io: Io, env: Envelope) -> None:
        rec = self._rec
        if rec is None or env.in_reply_to != self._waiting:
            return
        self._waiting = None
        body = env.body
        if isinstance(body, ErrorReply):
            exc = body.exception()
            if rec.status == "committing":
                if isinstance(exc, NotLeader) and exc.hint in self.coordinators:
                    self._coord = self.coordinators.index(exc.hint)
                else:
                    self._coord = (self._coord + 1) % len(self.coordinators)
                self._send_commit(io)
            else:
                self._abort(io, f"{type(exc).__name__}: {exc}",
                            retry=isinstance(exc, TxnAborted))
            return
        if isinstance(body, TxnOutcome):
            self._end(io, "committed" if body.committed else "aborted", body.reason,
                      retry=not body.committed)
            return
        if isinstance(body, ReadResult):
            rec.ops.append(("r", body.key, body.value if body.found else None))
        elif isinstance(body, WriteAck):
            rec.ops.append(("w", body.key, rec.writes[body.key]))
        self._step += 1
        self._next_op(io)

    # -- a transaction ------------------------------------------------------------------

    def _begin(self, io: Io) -> None:
        if self._attempt == 0:
            self._n += 1
            self._ts = io.now
            spec = self.spec
            n_ops = io.rng.randint(*spec.ops)
            self._plan = list(spec.fixed_plan) if spec.fixed_plan else [("r" if io.rng.random() < spec.read_fraction else "w",
                           io.rng.choice(spec.keys)) for _ in range(n_ops)]
        txn = f"{self.name}-{self._n}.{self._attempt}"
        self._rec = TxnRecord(txn, self.name, self._ts, started=io.now)
        self._step = 0
        self._next_op(io)

    def _next_op(self, io: Io) -> None:
        rec = self._rec
        assert rec is not None
        if self._step >= len(self._plan):
            rec.status = "committing"
            self._commit_started = io.now
            self._send_commit(io)
            return
        kind, key = self._plan[self._step]
        shard = shard_for(key, self.shards)
        if shard not in rec.participants:
            rec.participants.append(shard)
        seq = rec.seqs[shard] = rec.seqs.get(shard, 0) + 1
        if kind == "r":
            body: Any = TxnRead(rec.txn, rec.ts, key, seq)
        else:
            value = f"{rec.txn}:{key}:{self._step}"
            rec.writes[key] = value
            body = TxnWrite(rec.txn, rec.ts, key, value, False, seq)
        self._request(io, shard, body, self.spec.op_timeout_s)

    def _send_commit(self, io: Io) -> None:
        rec = self._rec
        assert rec is not None
        self._request(io, self.coordinators[self._coord],
                      CommitTxn(rec.txn, list(rec.participants),
                                [rec.seqs[p] for p in rec.participants]),
                      self.spec.commit_retry_s)

    def _request(self, io: Io, target: str, body: Any, timeout_s: float) -> None:
        self._waiting = io.send(target, body)
        self._deadline = io.now + timeout_s

    def _abort(self, io: Io, reason: str, retry: bool = True) -> None:
        rec = self._rec
        assert rec is not None
        for shard in rec.participants:
            io.send(shard, TxnRollback(rec.txn))
        self._end(io, "aborted", reason, retry=retry)

    def _end(self, io: Io, status: str, reason: str, *, retry: bool = False) -> None:
        rec = self._rec
        assert rec is not None
        rec.status, rec.reason, rec.finished = status, reason, io.now
        self.records.append(rec)
        io.trace("txn_" + status, txn=rec.txn, reason=reason)
        self._rec = None
        self._waiting = None
        if retry and self._attempt + 1 < self.spec.max_attempts:
            self._attempt += 1                  # the same logical transaction, anew
            self._next_at = io.now + io.rng.uniform(0.0, 0.02 * self._attempt)
            return
        self.done += 1
        self._attempt = 0
        self._next_at = io.now + io.rng.uniform(*self.spec.think_s)
