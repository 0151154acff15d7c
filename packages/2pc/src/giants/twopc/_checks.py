"""Checks of a finished run, through the core's checkers.

Inputs are what the clients were told (``TxnRecord``s) and what every shard persisted:
its outcome records ``txn -> (committed, seq)`` (``seq`` is that shard's commit order)
and its data. Each function returns human-readable problems (empty: the property holds):

* ``check_atomic``      -- ``giants.core.testing.atomicity.check_all_or_nothing``: one
  outcome per transaction at every shard, matching what the client was told;
* ``check_durable``     -- ``check_no_lost_writes`` per shard: its data is the replay of
  the writes of the transactions it committed, in its commit order;
* ``check_isolation``   -- ``giants.core.testing.serializability.check_serializable``
  over the clients' transactions, with each key's version order taken from its shard's
  commit order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from giants.core.testing.atomicity import check_all_or_nothing, check_no_lost_writes
from giants.core.testing.serializability import Txn, check_serializable
from giants.twopc._sharding import shard_for
from giants.twopc._workload import TxnRecord

__all__ = ["check_atomic", "check_durable", "check_isolation", "writes_on"]

Outcomes = Mapping[str, Mapping[str, tuple[bool, int]]]


def writes_on(rec: TxnRecord, shard: str, shards: list[str]) -> dict[str, Any]:
    return {k: v for k, v in rec.writes.items() if shard_for(k, shards) == shard}


def check_atomic(by_txn: Mapping[str, TxnRecord], outcomes: Outcomes,
                 shards: list[str]) -> list[str]:
    decided = {s: {t: c for t, (c, _) in recs.items()} for s, recs in outcomes.items()}
    wrote_to = {t: [s for s in shards if writes_on(r, s, shards)] for t, r in by_txn.items()}
    told = {t: r.status for t, r in by_txn.items()}
    return check_all_or_nothing(decided, participants=wrote_to, told=told)


def _commit_order(outcomes: Mapping[str, tuple[bool, int]]) -> list[str]:
    return [t for t, (c, _) in sorted(outcomes.items(), key=lambda kv: kv[1][1]) if c]


def check_durable(shard: str, shards: list[str], by_txn: Mapping[str, TxnRecord],
                  outcomes: Mapping[str, tuple[bool, int]], data: Mapping[str, Any]
                  ) -> list[str]:
    committed = [(t, writes_on(by_txn[t], shard, shards)) for t in _commit_order(outcomes)
                 if t in by_txn]
    return [f"{shard}: {p}" for p in check_no_lost_writes(data, committed)]


def check_isolation(records: list[TxnRecord], outcomes: Outcomes,
                    shards: list[str]) -> list[str]:
    by_txn = {r.txn: r for r in records}
    versions: dict[str, list[Any]] = {}
    for shard, recs in outcomes.items():
        for t in _commit_order(recs):
            if t in by_txn:
                for key, value in writes_on(by_txn[t], shard, shards).items():
                    versions.setdefault(key, []).append(value)
    txns = [Txn(r.txn, tuple(r.ops), r.status) for r in records]
    return check_serializable(txns, versions).anomalies
