"""Benchmark: kazoo create/set/get throughput against our 3-server ensemble and against
Apache ZooKeeper 3.8 (Debian's ``zookeeper`` package) measured in the same run.

Both ensembles are 3 servers on 127.0.0.1 (three JVMs for Apache ZooKeeper, each with
its own dataDir and transaction log; three Python processes for ours, on Raft with the
SQLite durable store). The kazoo client connects to a follower of each (writes are
forwarded to the leader, reads are served locally -- the common case for 2 of 3 clients).
Workloads: ``sync`` = one request at a time; ``async`` = batches of 200 pipelined
requests (``*_async`` + wait). 1 KB values as in the paper's Table 1.

Usage: ``python packages/zookeeper/benchmarks/bench_zookeeper.py [--ops N]`` (what
``nox -s bench -- zookeeper`` runs). Installs Debian's zookeeper with apt-get if missing.
Prints one table; the goal is our ops/s >= 0.5x Apache ZooKeeper's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from giants.core.launcher import free_port
from giants.zookeeper.testing import four_letter, start_ensemble, wait_until

ZK_JAR_DIR = "/usr/share/java"
GOAL = 0.5
VALUE = b"x" * 1024
BATCH = 200


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
def apache_ensemble(root: Path) -> Iterator[list[str]]:
    """Three QuorumPeerMain JVMs on loopback; yields their client addresses."""
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
        yield addrs
    finally:
        for p in procs:
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


def _rate(n: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def measure(address: str, ops: int, tag: str) -> dict[str, float]:
    zk = KazooClient(hosts=address, timeout=10.0)
    zk.start(timeout=30)
    base = f"/bench-{tag}-{os.getpid()}"
    zk.ensure_path(base)
    out: dict[str, float] = {}
    try:
        out["create sync"] = _rate(ops, lambda: [zk.create(f"{base}/s{i}", VALUE)
                                                  for i in range(ops)] and None)
        out["set sync"] = _rate(ops, lambda: [zk.set(f"{base}/s{i}", VALUE)
                                               for i in range(ops)] and None)
        out["get sync"] = _rate(ops, lambda: [zk.get(f"{base}/s{i}")
                                               for i in range(ops)] and None)

        def batched(call: Callable[[int], Any]) -> None:
            for lo in range(0, ops * 4, BATCH):
                for r in [call(i) for i in range(lo, min(lo + BATCH, ops * 4))]:
                    r.get(timeout=60)

        out["create async"] = _rate(ops * 4, lambda: batched(
            lambda i: zk.create_async(f"{base}/a{i}", VALUE)))
        out["set async"] = _rate(ops * 4, lambda: batched(
            lambda i: zk.set_async(f"{base}/a{i}", VALUE)))
        out["get async"] = _rate(ops * 4, lambda: batched(
            lambda i: zk.get_async(f"{base}/a{i}")))
    finally:
        zk.stop()
        zk.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1000, help="sync ops per workload (async: 4x)")
    args = ap.parse_args(argv)
    ensure_apache_zookeeper()
    root = Path(tempfile.mkdtemp(prefix="giants-zk-bench-"))
    try:
        with apache_ensemble(root) as addrs:
            print(f"Apache ZooKeeper 3.8 ensemble up: {addrs}")
            theirs = measure(follower_of(addrs), args.ops, "apache")
        ours_cluster = start_ensemble(root / "ours", tick_ms=2000)
        try:
            addrs = ours_cluster.endpoints["server"]
            wait_until(lambda: any("Mode: leader" in four_letter(a, b"srvr") for a in addrs))
            print(f"giants zookeeper ensemble (raft) up: {addrs}")
            ours = measure(follower_of(addrs), args.ops, "giants")
        finally:
            ours_cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"kazoo {args.ops} sync / {args.ops * 4} async (batches of {BATCH}) ops, 1 KB values,"
          " 3 servers on 127.0.0.1, client on a follower")
    print(f"{'workload':<14}{'giants ops/s':>14}{'Apache ZK ops/s':>17}{'ratio':>8}{'goal':>7}  met")
    ok = True
    for k in ours:
        ratio = ours[k] / theirs[k]
        met = ratio >= GOAL
        ok &= met
        print(f"{k:<14}{ours[k]:>14.0f}{theirs[k]:>17.0f}{ratio:>8.2f}{GOAL:>7.1f}  "
              f"{'yes' if met else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
