"""The bounded, durable memory of finished transactions (coordinator and participant).

After a transaction ends, R* keeps nothing about it (presumed abort: "no information"
means abort). We keep a bounded memory of recent outcomes anyway, for two reasons the
paper's protocol leaves to the application: a client that retries ``CommitTxn`` after a
timeout must get the real outcome, not a presumed abort of a transaction that in fact
committed; and a duplicate or late protocol message (a second ``Decision``, a
``PeerQuery`` after the end) must be answered consistently. Each record also carries a
sequence number, the order in which this node applied outcomes (used by the checkers to
replay committed writes).

Durable layout: ``<ns>`` maps txn -> ``[committed, seq]``; ``<ns>.meta`` holds
``"seq"``. The oldest records are deleted beyond ``max_records``.
"""

from __future__ import annotations

from collections import OrderedDict

from giants.core.process import Durable, Io

__all__ = ["OutcomeCache", "MAX_REMEMBERED_OUTCOMES"]

# Far above the transactions any client could still retry (clients give up after
# seconds; even 10k txn/s for 10 s fits).
MAX_REMEMBERED_OUTCOMES = 100_000


class OutcomeCache:
    def __init__(self, durable: Durable, ns: str, *,
                 max_records: int = MAX_REMEMBERED_OUTCOMES) -> None:
        self.ns = ns
        self.max_records = max_records
        records = sorted(((v[1], str(k), bool(v[0])) for k, v in durable.items(ns)))
        self._by_txn: OrderedDict[str, tuple[bool, int]] = OrderedDict(
            (txn, (committed, seq)) for seq, txn, committed in records)
        self.seq = int(durable.get(f"{ns}.meta", "seq", 0))

    def get(self, txn: str) -> bool | None:
        """True (committed), False (aborted) or None (not remembered)."""
        rec = self._by_txn.get(txn)
        return None if rec is None else rec[0]

    def record(self, io: Io, txn: str, committed: bool) -> int:
        """Remember ``txn``'s outcome durably; returns its sequence number. Idempotent:
        a transaction already remembered keeps its first record."""
        rec = self._by_txn.get(txn)
        if rec is not None:
            assert rec[0] == committed, f"{txn}: outcome changed from {rec[0]} to {committed}"
            return rec[1]
        self.seq += 1
        self._by_txn[txn] = (committed, self.seq)
        io.put(self.ns, txn, [committed, self.seq])
        io.put(f"{self.ns}.meta", "seq", self.seq)
        while len(self._by_txn) > self.max_records:
            old, _ = self._by_txn.popitem(last=False)
            io.delete(self.ns, old)
        return self.seq

    def __len__(self) -> int:
        return len(self._by_txn)

    def items(self) -> list[tuple[str, bool, int]]:
        return [(t, c, s) for t, (c, s) in self._by_txn.items()]
