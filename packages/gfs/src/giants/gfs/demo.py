"""``giants demo gfs`` and ``giants sim gfs``.

The demo runs the paper's key scenario on real processes: a master, a shadow master and
four chunkservers start; a client writes a file in small chunks; one chunkserver is
SIGKILLed in the middle of the write; the write completes anyway; the master notices
the dead server and re-replicates its chunks to the goal; ``fsck`` is clean; a block of
one replica is corrupted on disk by hand and reads still return the right bytes while
the corrupt replica is reported and re-cloned (§5.2). The master's trace (one JSON line
per message and decision) is left in the trace directory. The real multi-process test
runs the same steps (``real_kill_scenario``).

The simulation runs ``_simulation.append_scenario`` for one seed and prints its verdict.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions
from giants.core.trace import TraceWriter

__all__ = ["run_demo", "run_sim", "real_kill_scenario", "corrupt_one_block", "DEMO_OPTIONS"]

MB = 1024 * 1024
# Small chunks and short timeouts so a demo-sized file spans many chunks and recovery
# happens within seconds.
DEMO_OPTIONS: dict[str, Any] = {
    "chunk_size": 1 * MB, "lease_s": 5.0, "heartbeat_s": 0.3, "dead_after_s": 1.5,
    "tick_s": 0.05, "scan_every_s": 0.2, "rebalance_every_s": 3600.0, "trace": True,
}


def pattern(size: int, seed: int = 7) -> bytes:
    """Deterministic non-repeating-looking content, so misplaced bytes are caught."""
    block = hashlib.sha256(f"gfs-{seed}".encode()).digest() * 2048  # 64 KB
    reps = size // len(block) + 1
    data = bytearray(block * reps)[:size]
    for i in range(0, size, 4096):
        data[i:i + 8] = i.to_bytes(8, "big")
    return bytes(data[:size])


async def _wait_for(check: Callable[[], Any], deadline_s: float, what: str) -> Any:
    """Poll an async ``check`` until it returns something truthy, with a deadline."""
    with trio.move_on_after(deadline_s):
        while True:
            result = await check()
            if result:
                return result
            await trio.sleep(0.2)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")


def corrupt_one_block(data_dir: Path, chunkserver: str) -> tuple[int, Path]:
    """Flip bytes in the first block of the largest chunk file of ``chunkserver``."""
    files = sorted((data_dir / chunkserver / "chunks").glob("*.chunk"),
                   key=lambda p: (-p.stat().st_size, p.name))
    assert files, f"{chunkserver} holds no chunks"
    target = files[0]
    with open(target, "r+b") as f:
        f.seek(100)
        old = f.read(16)
        f.seek(100)
        f.write(bytes(b ^ 0xFF for b in old))
    return int(target.name.split(".")[0]), target


async def real_kill_scenario(cluster: LocalCluster, data_dir: Path, size: int,
                             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Write ``size`` bytes, SIGKILL a chunkserver mid-write, check recovery, corrupt a
    block, check reads. Raises ``AssertionError`` if a guarantee fails."""
    from giants.gfs.cli import format_fsck
    from giants.gfs.client import GFSClient

    eps = cluster.endpoints
    endpoints = eps["master"] + eps.get("shadow", [])
    data = pattern(size)
    victim = "cs-1"
    out: dict[str, Any] = {}
    async with GFSClient(endpoints, timeout_s=5.0, seed=1) as fs:
        await fs.create("/demo/big")
        say(f"writing {size // MB} MB to /demo/big in {DEMO_OPTIONS['chunk_size'] // MB} MB "
            f"chunks; {victim} will be SIGKILLed halfway")
        t0 = time.monotonic()
        piece = 4 * MB
        for offset in range(0, size, piece):
            if offset >= size // 2 and victim not in out:
                await trio.to_thread.run_sync(cluster.kill, victim)
                out[victim] = "killed"
                say(f"  SIGKILL {victim} at {offset // MB} MB")
            await fs.write("/demo/big", offset, data[offset:offset + piece])
        out["write_s"] = time.monotonic() - t0
        say(f"write complete: {size // MB} MB in {out['write_s']:.1f}s")
        assert await fs.size("/demo/big") == size, "file size after the write"

        async def healthy() -> Any:
            r = await fs.fsck()
            ok = not r.under_replicated and not r.missing and r.clones_in_flight == 0 \
                and victim not in r.chunkservers
            return r if ok else None

        report = await _wait_for(healthy, 60.0, "re-replication to the goal")
        out["fsck"] = report
        say(f"re-replicated: {report.chunks} chunks all at {report.goal} replicas on "
            f"{sorted(report.chunkservers)}; fsck:")
        say("  " + format_fsck(report).replace("\n", "\n  "))
        got = await fs.read("/demo/big", 0, size)
        assert got == data, "read-back differs from what was written"
        say("read back all bytes: identical")
        holder = sorted(report.chunkservers)[0]
        handle, path = corrupt_one_block(data_dir, holder)
        say(f"corrupted 16 bytes of chunk {handle} on {holder} ({path.name})")
        got = await fs.read("/demo/big", 0, size)
        assert got == data, "read after corruption returned wrong bytes"
        say("read after corruption: correct bytes (checksums caught the bad block)")

        async def repaired() -> Any:
            # Keep reading while the repair goes on: every read must be correct.
            assert await fs.read("/demo/big", 0, size) == data, "read during repair"
            r = await fs.fsck()
            return r if r.corrupt_reported >= 1 and not r.under_replicated \
                and not r.missing and r.clones_in_flight == 0 else None

        report = await _wait_for(repaired, 60.0, "the corrupt replica to be re-cloned")
        out["repaired"] = report
        say(f"corrupt replica reported ({report.corrupt_reported}) and re-cloned; "
            "fsck clean")
    return out


def run_demo(args: Any) -> int:
    data_dir = Path(getattr(args, "data_dir", ".giants/demo")) / "gfs"
    trace_dir = Path(getattr(args, "trace_dir", ".giants/traces"))
    shutil.rmtree(data_dir, ignore_errors=True)
    trace_dir.mkdir(parents=True, exist_ok=True)
    size = 48 * MB
    print("starting 1 master, 1 shadow master, 4 chunkservers as processes on 127.0.0.1")
    opts = UpOptions(4, 0, str(data_dir), extra=dict(DEMO_OPTIONS))
    ok = False
    with LocalCluster("gfs", opts) as cluster:
        try:
            trio.run(real_kill_scenario, cluster, data_dir, size)
            ok = True
        except AssertionError as exc:
            print(f"FAILED: {exc}")
    trace = trace_dir / "gfs-demo-master.trace.jsonl"
    src = data_dir / "master" / "trace.jsonl"
    if src.exists():
        shutil.copyfile(src, trace)
        print(f"trace: {trace} (render with: giants trace {trace})")
    print(f"logs: {data_dir}/*/log.txt")
    print(f"verdict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def run_sim(args: Any) -> int:
    from giants.gfs._simulation import append_scenario

    nemesis = (args.nemesis or "crash").split(",")
    trace_dir = Path(getattr(args, "trace_dir", ".giants/traces"))
    trace_dir.mkdir(parents=True, exist_ok=True)
    path = trace_dir / f"gfs-seed{args.seed}.trace.jsonl"
    trace = TraceWriter()
    clients = 3
    appends = max(1, int(getattr(args, "ops", 36) or 36) // clients)
    result = append_scenario(args.seed, clients=clients, appends=appends,
                             crash_master="master" in nemesis,
                             faults="none" not in nemesis, trace=trace)
    trace.save(str(path))
    print(f"gfs sim seed {args.seed}: {result.acked} operations acknowledged, "
          f"{result.failed} failed; {result.stats['events']} events")
    for p in result.problems[:20]:
        print(f"  problem: {p}")
    print(f"checker: every acknowledged record whole on every up-to-date replica: "
          f"{'yes' if result.ok else 'NO'}")
    print(f"trace: {path}")
    return 0 if result.ok else 1
