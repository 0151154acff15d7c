"""Benchmark: kazoo create/set/get throughput against our 3-server ensemble and against
Apache ZooKeeper 3.8 (Debian's ``zookeeper`` package) measured in the same run.

Both ensembles are 3 servers on 127.0.0.1 (three JVMs for Apache ZooKeeper, each with
its own dataDir and transaction log; three Python processes for ours, on Raft with the
SQLite durable store, ``synchronous=FULL``). The kazoo client connects to a follower of
each (writes are forwarded to the leader, reads are served locally -- the common case
for 2 of 3 clients). Workloads: ``sync`` = one request at a time; ``async`` = batches of
200 pipelined requests (``*_async`` + wait); ``set+get sync`` = a set and then a get of
the same znode, one at a time (read-your-writes on a follower; one op = the pair).
1 KB values as in the paper's Table 1.

Fairness on a shared machine: both ensembles run for the whole benchmark, and every
workload is measured in ``--rounds`` alternating rounds (A B B A A B ...), so a change
in the machine's load hits both sides alike; while one ensemble is measured the other's
server processes are paused (SIGSTOP/SIGCONT), so neither pays for the other's idle
work. Pauses last one round (well under a second or two, far below the 10 s session
timeout and both ensembles' failure detectors). Before measuring, each ensemble gets
``--warmup`` sync writes and reads (the JVMs' JIT, our SQLite write-ahead log growing to
its working size). A rate is a side's total operations over its total time.

Usage: ``python packages/zookeeper/benchmarks/bench_zookeeper.py [--ops N]`` (what
``nox -s bench -- zookeeper`` runs). Installs Debian's zookeeper with apt-get if missing.
Prints one table; the goal is our ops/s >= 0.5x Apache ZooKeeper's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from giants.core.launcher import free_port
from giants.zookeeper.testing import four_letter, start_ensemble, wait_until

ZK_JAR_DIR = "/usr/share/java"
GOAL = 0.5
VALUE = b"x" * 1024
BATCH = 200
WORKLOADS = ("create sync", "set sync", "get sync", "set+get sync", "create async", "set async",
             "get async")


def ensure_apache_zookeeper() -> None:
    if Path(ZK_JAR_DIR, "zookeeper.jar").exists():
        return
    print("installing Debian's zookeeper package (apt-get install -y zookeeper) ...")
    subprocess.run(["apt-get", "install", "-y", "zookeeper"], check=True,
                   stdout=subprocess.DEVNULL)


def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


@contextmanager
def apache_ensemble(root: Path) -> Iterator[tuple[list[str], list[int]]]:
    """Three QuorumPeerMain JVMs on loopback; yields their client addresses and pids."""
    ports = _free_ports(9)
    client, quorum, election = ports[0:3], ports[3:6], ports[6:9]
    servers = "\n".join(f"server.{i + 1}=127.0.0.1:{quorum[i]}:{election[i]}" for i in range(3))
    procs = []
    classpath = f"/etc/zookeeper/conf:{ZK_JAR_DIR}/*"
    try:
        for i in range(3):
            d = root / f"apache-{i}"
            (d / "data").mkdir(parents=True)
            (d / "data" / "myid").write_text(f"{i + 1}\n")
            cfg = d / "zoo.cfg"
            cfg.write_text(f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={d / 'data'}\n"
                           f"clientPort={client[i]}\nclientPortAddress=127.0.0.1\n"
                           f"admin.enableServer=false\n4lw.commands.whitelist=srvr,ruok\n"
                           f"{servers}\n")
            log = open(d / "log.txt", "w")
            procs.append(subprocess.Popen(
                ["java", "-Xmx256m", "-cp", classpath,
                 "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)],
                stdout=log, stderr=subprocess.STDOUT, cwd=d))
        addrs = [f"127.0.0.1:{p}" for p in client]
        wait_until(lambda: any("Mode: leader" in four_letter(a, b"srvr") for a in addrs), 120)
        yield addrs, [p.pid for p in procs]
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def follower_of(addrs: list[str]) -> str:
    for a in addrs:
        if "Mode: follower" in four_letter(a, b"srvr"):
            return a
    raise AssertionError(f"no follower among {addrs}")


@dataclass
class Side:
    """One ensemble under test: its kazoo client (on a follower) and its server pids."""

    name: str
    pids: list[int]
    zk: Any
    base: str
    ops: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def signal(self, sig: int) -> None:
        for pid in self.pids:
            os.kill(pid, sig)

    def rate(self, workload: str) -> float:
        return self.ops[workload] / self.seconds[workload]


def open_side(name: str, address: str, pids: list[int]) -> Side:
    zk = KazooClient(hosts=address, timeout=10.0)
    zk.start(timeout=30)
    base = f"/bench-{name}-{os.getpid()}"
    zk.ensure_path(base)
    return Side(name, pids, zk, base)


def _workload(side: Side, workload: str, lo: int, hi: int) -> None:
    """Run ``workload`` on znodes ``lo..hi-1`` of ``side``."""
    zk, base = side.zk, side.base
    prefix = "s" if workload.endswith(" sync") else "a"
    op = workload.split()[0]
    if workload.endswith(" sync"):
        call: Callable[[str], Any] = {"create": lambda p: zk.create(p, VALUE),
                                      "set": lambda p: zk.set(p, VALUE),
                                      "get": zk.get,
                                      "set+get": lambda p: (zk.set(p, VALUE), zk.get(p))}[op]
        for i in range(lo, hi):
            call(f"{base}/{prefix}{i}")
        return
    start_async: Callable[[str], Any] = {"create": lambda p: zk.create_async(p, VALUE),
                                         "set": lambda p: zk.set_async(p, VALUE),
                                         "get": zk.get_async}[op]
    for b in range(lo, hi, BATCH):
        for r in [start_async(f"{base}/{prefix}{i}") for i in range(b, min(b + BATCH, hi))]:
            r.get(timeout=60)


def _timed(side: Side, workload: str, lo: int, hi: int) -> None:
    start = time.perf_counter()
    _workload(side, workload, lo, hi)
    side.seconds[workload] = side.seconds.get(workload, 0.0) + time.perf_counter() - start
    side.ops[workload] = side.ops.get(workload, 0) + hi - lo


def warm_up(side: Side, n: int) -> None:
    zk, path = side.zk, f"{side.base}/warmup"
    zk.create(path, VALUE)
    for _ in range(n):
        zk.set(path, VALUE)
        zk.get(path)


def measure(sides: tuple[Side, Side], ops: int, rounds: int) -> None:
    """Every workload in ``rounds`` alternating rounds; the idle side is paused."""
    for workload in WORKLOADS:
        total = ops if workload.endswith(" sync") else ops * 4
        bounds = [total * r // rounds for r in range(rounds + 1)]
        for r in range(rounds):
            order = sides if r % 2 == 0 else sides[::-1]
            for k, side in enumerate(order):
                other = order[1 - k]
                other.signal(signal.SIGSTOP)
                try:
                    _timed(side, workload, bounds[r], bounds[r + 1])
                finally:
                    other.signal(signal.SIGCONT)


def _load() -> str:
    return open("/proc/loadavg").read().split()[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1000, help="sync ops per workload (async: 4x)")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds per workload")
    ap.add_argument("--warmup", type=int, default=300, help="sync set+get pairs per side first")
    args = ap.parse_args(argv)
    ensure_apache_zookeeper()
    root = Path(tempfile.mkdtemp(prefix="giants-zk-bench-"))
    load_before = _load()
    try:
        with apache_ensemble(root) as (apache_addrs, apache_pids):
            print(f"Apache ZooKeeper 3.8 ensemble up: {apache_addrs}")
            ours_cluster = start_ensemble(root / "ours", tick_ms=2000)
            try:
                addrs = ours_cluster.endpoints["server"]
                wait_until(lambda: any("Mode: leader" in four_letter(a, b"srvr")
                                       for a in addrs))
                print(f"giants zookeeper ensemble (raft) up: {addrs}")
                theirs = open_side("apache", follower_of(apache_addrs), apache_pids)
                ours = open_side("giants", follower_of(addrs), list(ours_cluster.pids.values()))
                try:
                    for side in (theirs, ours):
                        warm_up(side, args.warmup)
                    measure((theirs, ours), args.ops, args.rounds)
                finally:
                    for side in (theirs, ours):
                        side.zk.stop()
                        side.zk.close()
            finally:
                ours_cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"kazoo {args.ops} sync / {args.ops * 4} async (batches of {BATCH}) ops, 1 KB values,"
          f" 3 servers on 127.0.0.1, client on a follower; {args.rounds} alternating rounds;"
          f" load average {load_before} -> {_load()}")
    print(f"{'workload':<14}{'giants ops/s':>14}{'Apache ZK ops/s':>17}{'ratio':>8}{'goal':>7}  met")
    for k in WORKLOADS:
        ratio = ours.rate(k) / theirs.rate(k)
        print(f"{k:<14}{ours.rate(k):>14.0f}{theirs.rate(k):>17.0f}{ratio:>8.2f}{GOAL:>7.1f}  "
              f"{'yes' if ratio >= GOAL else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
