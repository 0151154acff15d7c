"""Benchmark: SqlDurableStore.apply() rate, and AppendFile append+fsync, on this disk.

Prints one table: our figure next to the physical limit measured in the same run (a raw
``write`` + ``fdatasync`` of the same bytes on the same file system), and the ratio.
Usage: ``python common/benchmarks/bench_storage.py [--seconds S] [--dir D]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from giants.core.process import Put
from giants.core.storage import AppendFile, SqlDurableStore

VALUE = b"v" * 64


def rate(fn: Callable[[], None], seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def raw_fsync_rate(path: Path, nbytes: int, seconds: float) -> float:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return rate(lambda: (os.write(fd, b"x" * nbytes), os.fdatasync(fd)) and None, seconds)
    finally:
        os.close(fd)


async def sql_apply_rate(path: Path, batch: int, seconds: float) -> float:
    store = SqlDurableStore(path)
    await store.load()
    key = 0
    n = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await store.apply([Put("log", key + i, VALUE) for i in range(batch)])
        key += batch
        n += 1
    await store.close()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        root = Path(d)
        rows = []
        for batch in (1, 64):
            ours = trio.run(sql_apply_rate, root / f"b{batch}.sqlite3", batch, args.seconds)
            limit = raw_fsync_rate(root / f"raw{batch}", batch * 80, args.seconds)
            rows.append((f"SqlDurableStore.apply, {batch} x 64 B Put", ours, limit))
        seg = AppendFile(root / "seg")
        ours = rate(lambda: (seg.append(VALUE), seg.fsync()) and None, args.seconds)
        seg.close()
        rows.append(("AppendFile.append+fsync, 64 B", ours, raw_fsync_rate(root / "raw", 72,
                                                                         args.seconds)))
    print(f"{'operation':44} {'ours/s':>10} {'write+fdatasync/s':>18} {'ratio':>6}")
    for name, ours, limit in rows:
        print(f"{name:44} {ours:10.0f} {limit:18.0f} {ours / limit:6.2f}")
    for name, ours, _ in rows[:2]:
        batch = int(name.split(", ")[1].split(" ")[0])
        print(f"  {name}: {ours * batch:.0f} Puts/s")


if __name__ == "__main__":
    main()
