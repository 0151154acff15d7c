"""Benchmark: the testing kit's checkers on realistic histories.

Prints one table. Every history comes from a correct-by-construction store in
``giants.core.testing.generators`` (an atomic register store with overlapping operations,
failures and ``info`` outcomes; a serial transaction store), optionally with one read
corrupted to a value nobody wrote. Each row gives the checker's time (median over the
seeds, and the worst), next to a baseline measured in the same run: one model step per
operation in completion order (for transactions: indexing every operation once) --
the least any checker must do, look at every operation once -- and their ratio.

The headline row is the brief's requirement: a 2,000-operation, 20-key, 10-client
register history checks in well under 10 s on a 2-core machine. The single-key rows
are the hard case for any Wing-Gong search (all 2,000 operations on one object); the
corrupted single-key row shows how a failing search grows (it must rule out every
order before it may say no).

Usage: ``python common/benchmarks/bench_checkers.py [--seeds N]`` (default 5 seeds per
row). Pure computation, no I/O.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from giants.core.testing.atomicity import check_acked_writes
from giants.core.testing.generators import simulate_kv_store, simulate_txn_store
from giants.core.testing.history import History, Operation
from giants.core.testing.linearizability import check_kv_linearizable
from giants.core.testing.models import Register
from giants.core.testing.serializability import check_serializable

GOAL_HEADLINE_S = 10.0


def corrupt_one_read(h: History, rng: random.Random) -> History:
    """A copy of ``h`` in which one successful read returned a value nobody wrote."""
    reads = [op.id for op in h.operations() if op.f == "read" and op.status == "ok"]
    return h.with_result(rng.choice(reads), "corrupt")


def replay_baseline(ops: list[Operation]) -> float:
    """Seconds to apply every operation to a per-key register once, in completion order."""
    model = Register()
    done = sorted((op for op in ops if op.status == "ok"),
                  key=lambda op: op.complete_index or 0)
    t0 = time.perf_counter()
    states: dict[Any, Any] = {}
    for op in done:
        _, states[op.key] = model.step(states.get(op.key), op.f, op.key, op.value, op.output)
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def lin_row(name: str, seeds: int, corrupt: bool, max_steps: int, **params: Any) -> list[str]:
    times, bases, steps, verdicts, info = [], [], [], set(), 0
    for seed in range(seeds):
        rng = random.Random(seed)
        run = simulate_kv_store(rng, **params)
        h = corrupt_one_read(run.history, rng) if corrupt else run.history
        ops = h.operations()
        info += sum(op.indeterminate for op in ops)
        dt, res = timed(partial(check_kv_linearizable, h, max_steps=max_steps))
        assert res.ok != corrupt or res.timed_out, f"seed {seed}: wrong verdict"
        verdicts.add("unknown" if res.timed_out else "ok" if res.ok else "rejected")
        times.append(dt)
        steps.append(res.steps)
        bases.append(replay_baseline(ops))
    history = (f"{params['n_ops']} ops, {params['n_keys']} keys, {params['n_clients']} "
               f"clients, {info / seeds:.0f} info")
    return _row(name, history, "/".join(sorted(verdicts)), statistics.median(steps), times,
                bases)


def _row(name: str, history: str, verdict: str, steps: float | None, times: list[float],
         bases: list[float]) -> list[str]:
    med, base = statistics.median(times), statistics.median(bases)
    return [name, history, verdict, "-" if steps is None else f"{steps:,.0f}", f"{med:.3f}", f"{max(times):.3f}",
            f"{base * 1000:.2f}", f"{med / base:,.0f}x" if base > 0 else "-"]


def serializability_row(seeds: int) -> list[str]:
    times, bases = [], []
    for seed in range(seeds):
        txns = simulate_txn_store(random.Random(seed), n_txns=2000, n_keys=20, max_ops=6)
        dt, res = timed(partial(check_serializable, txns))
        assert res.ok, res.explain()
        times.append(dt)
        t0 = time.perf_counter()
        index = {(key, value): t for t in txns for _, key, value in t.ops}   # one look each
        bases.append(time.perf_counter() - t0)
        assert index
    return _row("serializable (DSG)", "2000 txns, 20 keys, <=6 ops", "ok", None, times, bases)


def acked_row(seeds: int) -> list[str]:
    times, bases = [], []
    for seed in range(seeds):
        run = simulate_kv_store(random.Random(seed), n_ops=2000, n_keys=20, n_clients=10)
        dt, problems = timed(partial(check_acked_writes, run.history, run.final))
        assert problems == [], problems
        times.append(dt)
        bases.append(replay_baseline(run.history.operations()))
    return _row("acked writes kept", "2000 ops, 20 keys, 10 clients", "ok", None, times, bases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="histories per row")
    args, _ = parser.parse_known_args()   # nox -s bench passes other benchmarks' options
    n = args.seeds
    headline = {"n_ops": 2000, "n_keys": 20, "n_clients": 10, "info_rate": 0.01}
    single = {"n_ops": 2000, "n_keys": 1, "n_clients": 10, "info_rate": 0.01}
    rows = [
        lin_row("linearizable (headline)", n, False, 2_000_000, **headline),
        lin_row("one read corrupted", n, True, 2_000_000, **headline),
        lin_row("linearizable, one key", n, False, 2_000_000, **single),
        lin_row("one key, corrupted", n, True, 2_000_000, **{**single, "n_ops": 500}),
        serializability_row(n),
        acked_row(n),
    ]
    headers = ["check", "history", "verdict", "steps", "ours s (median)", "worst s",
               "baseline ms", "ratio"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "-" * (sum(widths) + 2 * (len(widths) - 1))
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    print(line)
    worst = float(rows[0][5])
    verdict = "meets" if worst < GOAL_HEADLINE_S else "MISSES"
    print(f"headline: worst {worst:.3f} s for 2,000 ops / 20 keys / 10 clients -- {verdict} "
          f"the goal of < {GOAL_HEADLINE_S:.0f} s. Baseline: one register step per "
          "operation in completion order.")


if __name__ == "__main__":
    main()
