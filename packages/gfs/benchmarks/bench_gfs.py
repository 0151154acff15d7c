"""GFS micro-benchmarks in the shape of the paper's Figure 3 (§6.1).

``nox -s bench -- gfs`` (or ``python packages/gfs/benchmarks/bench_gfs.py``) starts a
master, a shadow and 4 chunkservers as processes on 127.0.0.1, then measures aggregate
read, write and record-append throughput with 1, 2 and 4 client processes. In the same
run it measures the two physical limits on this machine -- raw loopback TCP bandwidth
(one stream, plain sockets) and raw disk write bandwidth (1 MB writes, then fsync) --
and prints our figures as fractions of them, beside the paper's own fractions.

Each client process writes its own file (``--mb`` MB), then reads it back; for record
append all clients append 1 MB records to one shared file (as in the paper). A write
sends every byte to 3 replicas, so the table also shows the write figure against a
third of the loopback limit (the paper's "theoretical limit" reasoning for writes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

MB = 1024 * 1024


# -- physical limits -----------------------------------------------------------------


def loopback_mb_s(total_mb: int = 1024) -> float:
    """One TCP stream over 127.0.0.1, 1 MB sends, receiver in another thread."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    done = threading.Event()

    def receive() -> None:
        conn, _ = srv.accept()
        buf = bytearray(MB)
        got = 0
        while got < total_mb * MB:
            n = conn.recv_into(buf)
            if not n:
                break
            got += n
        conn.close()
        done.set()

    t = threading.Thread(target=receive)
    t.start()
    block = os.urandom(MB)
    with socket.create_connection(("127.0.0.1", port)) as s:
        start = time.perf_counter()
        for _ in range(total_mb):
            s.sendall(block)
        done.wait()
        elapsed = time.perf_counter() - start
    t.join()
    srv.close()
    return total_mb / elapsed


def disk_mb_s(directory: Path, total_mb: int = 256) -> float:
    """Sequential 1 MB writes to a new file, then fsync, in the benchmark's data dir."""
    path = directory / "disk-probe.bin"
    block = os.urandom(MB)
    start = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(total_mb):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - start
    path.unlink()
    return total_mb / elapsed


# -- one client process ------------------------------------------------------------------


def client_main(args: argparse.Namespace) -> None:
    import trio

    from giants.gfs.client import GFSClient

    endpoints = args.endpoints.split(",")
    piece = 8 * MB
    data = os.urandom(piece)

    async def run() -> dict[str, float]:
        async with GFSClient(endpoints, timeout_s=30.0, client_id=f"bench-{args.client}") as fs:
            path = f"/bench/c{args.client}"
            if args.op == "write":
                await fs.create(path)
            elif args.op == "append":
                await fs.open("/bench/appends", create=True)
            time.sleep(max(0.0, args.start_at - time.time()))
            t0 = time.time()
            moved = 0
            if args.op == "write":
                for off in range(0, args.mb * MB, piece):
                    await fs.write(path, off, data)
                    moved += piece
            elif args.op == "read":
                for off in range(0, args.mb * MB, piece):
                    moved += len(await fs.read(path, off, piece))
            else:
                record = data[:MB]
                for _ in range(args.mb):
                    await fs.record_append("/bench/appends", record)
                    moved += len(record)
            return {"start": t0, "end": time.time(), "bytes": moved}

    print(json.dumps(trio.run(run)), flush=True)


def run_clients(endpoints: list[str], op: str, n: int, mb: int) -> float:
    """Aggregate MB/s of ``n`` client processes doing ``op`` at once."""
    start_at = time.time() + 3.0  # every client connected and ready before the clock starts
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--client", str(i), "--op", op, "--mb", str(mb),
         "--endpoints", ",".join(endpoints), "--start-at", str(start_at)],
        stdout=subprocess.PIPE, text=True) for i in range(n)]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=900)
        if p.returncode != 0:
            raise SystemExit(f"a {op} client failed (exit {p.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    total = sum(r["bytes"] for r in results) / MB
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    return total / elapsed


# -- the table ---------------------------------------------------------------------------

PAPER = {  # GFS §6.1, Figure 3: fraction of the network limit
    "read": "80% (1 client), 75% (16)",
    "write": "50% (of 67 MB/s, 3 replicas)",
    "append": "6.0 -> 4.8 MB/s (1 -> 16)",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=64, help="MB per client per operation")
    ap.add_argument("--clients", default="1,2,4")
    ap.add_argument("--chunk-mb", type=int, default=16)
    ap.add_argument("--client", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--op", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--endpoints", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client is not None:
        client_main(args)
        return

    from giants.core.launcher import LocalCluster
    from giants.core.plugins import UpOptions

    root = Path(tempfile.mkdtemp(prefix="gfs-bench-"))
    try:
        print("measuring raw loopback TCP and raw disk write bandwidth ...", flush=True)
        net = loopback_mb_s()
        disk = disk_mb_s(root)
        extra = {"chunk_size": args.chunk_mb * MB, "heartbeat_s": 0.5, "dead_after_s": 5.0,
                 "tick_s": 0.05, "rebalance_every_s": 3600.0}
        rows = []
        counts = [int(c) for c in args.clients.split(",")]
        for n in counts:
            print(f"starting 1 master, 1 shadow, 4 chunkservers for {n} client(s) ...",
                  flush=True)
            data_dir = root / f"cluster-{n}"
            with LocalCluster("gfs", UpOptions(4, 0, str(data_dir), extra=extra),
                              log=open(os.devnull, "w")) as cluster:
                eps = cluster.endpoints["master"] + cluster.endpoints["shadow"]
                for op in ("write", "read", "append"):
                    mb_s = run_clients(eps, op, n, args.mb)
                    rows.append((op, n, mb_s))
                    print(f"  {op:6} {n} client(s): {mb_s:7.1f} MB/s", flush=True)
            shutil.rmtree(data_dir, ignore_errors=True)
        print()
        print(f"limits measured in this run: loopback TCP {net:.0f} MB/s, "
              f"disk write {disk:.0f} MB/s; 4 chunkservers, 3 replicas, "
              f"{args.chunk_mb} MB chunks, {args.mb} MB per client")
        header = ("op", "clients", "MB/s", "/loopback", "/(loopback/3)", "/disk",
                  "paper (Fig. 3)")
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for op, n, mb_s in rows:
            per_replica = f"{mb_s / (net / 3):.1%}" if op == "write" else "-"
            print(f"| {op} | {n} | {mb_s:.1f} | {mb_s / net:.1%} | {per_replica} | "
                  f"{mb_s / disk:.1%} | {PAPER[op]} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
