"""Benchmark: get/set ops/s with pymemcache against our server and real memcached.

Scaling Memcache at Facebook §2 (the memcached building block) and §3.1 (mcrouter).
Run by ``nox -s bench -- memcache`` or directly. It starts, on 127.0.0.1 and in this one
run: Debian's memcached (installed with apt-get if missing), our server
(``python -m giants.memcache serve``) and our router in front of our server; then for
1 and 4 client processes it measures pymemcache get and set throughput for a fixed time
against each, and prints one table with the ratio to memcached (goal >= 0.5x) and the
router's overhead.

Options: ``--seconds S`` per measurement (default 3), ``--value-bytes N`` (default 100),
``--rounds R`` (best of R interleaved rounds, default 2).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

KEYS = 1000
GOAL = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, deadline_s: float = 15.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def started(cmd: list[str], port: int) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def memcached_binary() -> str:
    path = shutil.which("memcached")
    if path:
        return path
    print("memcached not found; installing the Debian package with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "memcached"], env=env,
                      capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=True)
        subprocess.run(["apt-get", "install", "-y", "memcached"], env=env,
                       capture_output=True, check=True)
    path = shutil.which("memcached")
    if not path:
        raise RuntimeError("apt-get did not provide memcached")
    return path


def _worker(port: int, op: str, seconds: float, value_bytes: int, seed: int,
            out: mp.Queue) -> None:  # type: ignore[type-arg]
    from pymemcache.client.base import Client

    client = Client(("127.0.0.1", port), connect_timeout=5, timeout=5)
    value = b"v" * value_bytes
    keys = [f"bench:{i}".encode() for i in range(KEYS)]
    n = 0
    i = seed
    start = time.perf_counter()
    end = start + seconds
    if op == "get":
        get = client.get
        while True:
            for _ in range(100):
                get(keys[i % KEYS])
                i += 7
            n += 100
            if time.perf_counter() >= end:
                break
    else:
        set_ = client.set
        while True:
            for _ in range(100):
                set_(keys[i % KEYS], value, noreply=False)
                i += 7
            n += 100
            if time.perf_counter() >= end:
                break
    out.put(n / (time.perf_counter() - start))
    client.close()


def measure(port: int, op: str, clients: int, seconds: float, value_bytes: int) -> float:
    from pymemcache.client.base import Client

    c = Client(("127.0.0.1", port))
    value = b"v" * value_bytes
    for i in range(KEYS):
        c.set(f"bench:{i}".encode(), value)
    c.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(port, op, seconds, value_bytes, k * 13, q))
             for k in range(clients)]
    for p in procs:
        p.start()
    total = sum(q.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2, help="best of N interleaved rounds")
    args = ap.parse_args()
    mc_port, our_port, router_port = free_port(), free_port(), free_port()
    py = sys.executable
    ours = [py, "-m", "giants.memcache", "serve", "--port", str(our_port), "--memory", "256m"]
    router = [py, "-m", "giants.memcache", "router", "--port", str(router_port),
              "--pool", f"127.0.0.1:{our_port}"]
    real = [memcached_binary(), "-l", "127.0.0.1", "-p", str(mc_port), "-m", "256", "-U", "0",
            "-u", "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")]
    rows = []
    with started(real, mc_port), started(ours, our_port), started(router, router_port):
        for op in ("get", "set"):
            for clients in (1, 4):
                # Best of ROUNDS interleaved rounds: the machine is shared, and a burst of
                # someone else's load should not decide a cell.
                mc = us = via = 0.0
                for _ in range(args.rounds):
                    mc = max(mc, measure(mc_port, op, clients, args.seconds, args.value_bytes))
                    us = max(us, measure(our_port, op, clients, args.seconds, args.value_bytes))
                    via = max(via, measure(router_port, op, clients, args.seconds,
                                           args.value_bytes))
                rows.append((op, clients, us, mc, via))
                print(f"  measured {op} x{clients}: ours {us:,.0f}/s, memcached {mc:,.0f}/s, "
                      f"via router {via:,.0f}/s", flush=True)
    print()
    load = os.getloadavg()[0]
    print(f"memcache benchmark: pymemcache, {args.value_bytes}-byte values, {KEYS} keys, "
          f"best of {args.rounds} x {args.seconds:g} s per cell, 127.0.0.1, {os.cpu_count()} "
          f"CPUs, load average {load:.1f}")
    head = (f"| {'op':3} | {'clients':7} | {'ours ops/s':>11} | {'memcached ops/s':>15} | "
            f"{'ratio':>6} | {'goal':>6} | {'via router ops/s':>16} | {'router overhead':>15} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    ok = True
    for op, clients, us, mc, via in rows:
        ratio = us / mc if mc else 0.0
        ok = ok and ratio >= GOAL
        overhead = (us - via) / us if us else 0.0
        print(f"| {op:3} | {clients:7} | {us:11,.0f} | {mc:15,.0f} | {ratio:5.2f}x | "
              f">={GOAL:.1f}x | {via:16,.0f} | {overhead:14.0%} |")
    print(f"goal >= {GOAL}x memcached in every row: {'MET' if ok else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
