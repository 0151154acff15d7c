"""Checks of a finished run: atomic commitment and durability of committed writes.

Inputs are what the clients were told (``TxnRecord``s) and what every shard persisted
(its outcome records ``txn -> (committed, seq)`` and its data). Each function returns a
list of human-readable problems (empty: the property holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from giants.twopc._sharding import shard_for
from giants.twopc._workload import TxnRecord

__all__ = ["check_all_or_nothing_shards", "check_replay", "writes_on"]


def writes_on(rec: TxnRecord, shard: str, shards: list[str]) -> dict[str, Any]:
    return {k: v for k, v in rec.writes.items() if shard_for(k, shards) == shard}


def check_all_or_nothing_shards(by_txn: Mapping[str, TxnRecord],
                                outcomes: Mapping[str, Mapping[str, tuple[bool, int]]],
                                shards: list[str]) -> list[str]:
    """Every transaction has one outcome at every shard that recorded one; a
    transaction a client saw commit committed at every shard it wrote to; one it saw
    abort committed nowhere; nothing committed that no client ran."""
    problems = []
    seen: dict[str, dict[str, bool]] = {}
    for shard, recs in outcomes.items():
        for txn, (committed, _) in recs.items():
            seen.setdefault(txn, {})[shard] = committed
    for txn, per_shard in sorted(seen.items()):
        if len(set(per_shard.values())) > 1:
            problems.append(f"{txn}: shards disagree: {per_shard}")
        if txn not in by_txn and any(per_shard.values()):
            problems.append(f"{txn}: committed at {per_shard} but no client ran it")
    for txn, rec in sorted(by_txn.items()):
        per_shard = seen.get(txn, {})
        if rec.status == "committed":
            for shard in shards:
                if writes_on(rec, shard, shards) and per_shard.get(shard) is not True:
                    problems.append(f"{txn}: client saw commit, {shard} has "
                                    f"{per_shard.get(shard)} (lost committed write)")
        elif rec.status == "aborted" and any(per_shard.values()):
            problems.append(f"{txn}: client saw abort, but committed at {per_shard}")
    return problems


def check_replay(shard: str, shards: list[str], by_txn: Mapping[str, TxnRecord],
                 outcomes: Mapping[str, tuple[bool, int]], data: Mapping[str, Any]
                 ) -> list[str]:
    """The shard's data is the replay of its committed transactions' writes in its
    commit order: no committed write lost, none applied twice or out of order, no
    aborted or uncommitted write visible."""
    expected: dict[str, Any] = {}
    for txn, (committed, _seq) in sorted(outcomes.items(), key=lambda kv: kv[1][1]):
        if not committed or txn not in by_txn:
            continue
        expected.update(writes_on(by_txn[txn], shard, shards))
    if dict(data) != expected:
        diff = sorted(k for k in set(data) | set(expected) if data.get(k) != expected.get(k))
        return [f"{shard}: data differs from the replay of its commits at keys {diff[:5]}: "
                f"{[(k, data.get(k), expected.get(k)) for k in diff[:3]]}"]
    return []
