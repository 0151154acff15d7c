"""A closed-loop transaction load generator for the benchmarks (real client, real cluster).

``run_load`` keeps ``clients`` transactions in flight for ``duration_s``: each picks its
keys (``pick(rng)``), reads and rewrites them (read-modify-write: the pattern that makes
2PL deadlock-prone), and commits; an aborted attempt is retried with its original
timestamp (wait-die / wound-wait need that to avoid starvation). It reports committed
transactions per second, the abort rate (aborted attempts / attempts) and commit-latency
percentiles of committed attempts (begin to commit acknowledged).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from giants.core.errors import IndefiniteError, TxnAborted
from giants.twopc.client import TxnClient

__all__ = ["LoadResult", "run_load"]

# Attempts in flight when a run ends get this long to finish before they are cancelled.
STOP_GRACE_S = 30.0


@dataclass
class LoadResult:
    committed: int = 0
    aborted: int = 0
    unknown: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    commit_latencies_s: list[float] = field(default_factory=list)

    @property
    def txn_per_s(self) -> float:
        return self.committed / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def abort_rate(self) -> float:
        attempts = self.committed + self.aborted
        return self.aborted / attempts if attempts else 0.0

    def percentile_ms(self, q: float, *, commit_only: bool = False) -> float:
        """A latency percentile of committed attempts: the whole transaction, or (with
        ``commit_only``) just ``commit()`` -- the two phases of 2PC."""
        data = self.commit_latencies_s if commit_only else self.latencies_s
        if not data:
            return float("nan")
        xs = sorted(data)
        return 1000 * xs[min(len(xs) - 1, int(q * len(xs)))]


async def _one(db: TxnClient, keys: list[str], ts: float, res: LoadResult) -> bool:
    start = time.perf_counter()
    txn = db.begin(ts)
    try:
        for key in keys:
            value = await txn.get(key)
            await txn.put(key, (value or 0) + 1)
        commit_start = time.perf_counter()
        await txn.commit()
        res.commit_latencies_s.append(time.perf_counter() - commit_start)
    except TxnAborted:
        await txn.rollback()
        res.aborted += 1
        return False
    except IndefiniteError:
        res.unknown += 1
        return True
    res.committed += 1
    res.latencies_s.append(time.perf_counter() - start)
    return True


async def run_load(coordinators: list[str], shards: list[str], *, clients: int,
                   duration_s: float, pick: Callable[[random.Random, int], list[str]],
                   seed: int = 0, warmup_s: float = 0.5) -> LoadResult:
    """``pick(rng, client_index)`` -> the keys of one transaction."""
    res = LoadResult()
    async with TxnClient(coordinators, shards, op_timeout_s=5.0, commit_timeout_s=10.0) as db:
        measuring = stopping = False

        async def worker(i: int) -> None:
            rng = random.Random(f"{seed}:{i}")
            while not stopping:
                keys = pick(rng, i)
                ts = time.time()
                scratch = LoadResult()
                while not await _one(db, keys, ts, scratch) and not stopping:
                    await trio.sleep(rng.uniform(0, 0.002))
                if measuring:
                    res.committed += scratch.committed
                    res.aborted += scratch.aborted
                    res.unknown += scratch.unknown
                    res.latencies_s += scratch.latencies_s
                    res.commit_latencies_s += scratch.commit_latencies_s

        async with trio.open_nursery() as nursery:
            for i in range(clients):
                nursery.start_soon(worker, i)
            await trio.sleep(warmup_s)
            measuring = True
            t0 = time.perf_counter()
            await trio.sleep(duration_s)
            res.elapsed_s = time.perf_counter() - t0
            # stop gracefully: every attempt in flight commits or aborts, so no abandoned
            # transaction keeps its locks into the next measurement
            measuring, stopping = False, True
            nursery.cancel_scope.deadline = trio.current_time() + STOP_GRACE_S
    return res
