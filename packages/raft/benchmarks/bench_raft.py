"""Raft benchmark: a 3-node giants Raft KV cluster on loopback beside PySyncObj's.

Run: ``nox -s bench -- raft`` or ``python packages/raft/benchmarks/bench_raft.py
[--seconds S] [--failovers N] [--json]``. Importable: ``measure(seconds=, failovers=)``
returns ``{"giants": {...}, "pysyncobj": {...}}`` (the Paxos benchmark reuses it).

Both systems run as three OS processes on 127.0.0.1 with their durable logs on disk
(giants: SQLite group commit; PySyncObj: its journal file). Figures, for each system:

* ``writes_1``   -- committed writes/s, one client, one write at a time;
* ``writes_32``  -- committed writes/s, 32 concurrent clients;
* ``p50_ms``/``p99_ms`` -- write latency with one client; ``p99_32_ms`` with 32;
* ``reads_32``   -- linearizable reads/s, 32 concurrent clients (giants: ReadIndex;
  PySyncObj has no linearizable read, so a read goes through its log as a replicated
  call -- its only linearizable option);
* ``failover_ms`` -- SIGKILL the leader, time until a write is committed again (median
  of ``failovers`` rounds; the killed node is restarted between rounds).

Giants' clients are ``KVClient``s in this process talking TCP to the leader; PySyncObj's
clients are threads inside its leader process (it has no client protocol), which spares
them a network hop. Goal: giants >= 3x PySyncObj's committed writes/s with 32 clients.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

GOAL_RATIO = 3.0
CONCURRENCY = 32


# -- giants ----------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _load(endpoints: list[str], concurrency: int, seconds: float, reads: bool
                ) -> tuple[float, list[float]]:
    import trio

    from giants.core.errors import GiantsError
    from giants.raft import KVClient

    latencies: list[float] = []
    async with KVClient(endpoints, op_timeout_s=10.0) as kv:
        await kv.put("warm", 0)
        done = 0
        deadline = trio.current_time() + seconds

        async def worker(i: int) -> None:
            nonlocal done
            n = 0
            while trio.current_time() < deadline:
                n += 1
                t0 = trio.current_time()
                try:
                    if reads:
                        await kv.get(f"b{i}")
                    else:
                        await kv.put(f"b{i}", n)
                except GiantsError:
                    continue
                latencies.append(trio.current_time() - t0)
                done += 1

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(concurrency):
                nursery.start_soon(worker, i)
        return done / (trio.current_time() - start), latencies


async def _leader_name(endpoints: list[str]) -> str:
    from giants.raft import KVClient

    async with KVClient(endpoints) as kv:
        address = await kv.leader()
    assert address in endpoints, f"no leader among {endpoints}"
    return f"node-{endpoints.index(address)}"


async def _time_to_write(endpoints: list[str], killed_at: float) -> float:
    import trio

    from giants.core.errors import GiantsError
    from giants.raft import KVClient

    async with KVClient(endpoints, op_timeout_s=30.0) as kv:
        while True:
            try:
                await kv.put("failover", time.monotonic())
                return time.monotonic() - killed_at
            except GiantsError:
                await trio.sleep(0.01)


def measure_giants(seconds: float, failovers: int) -> dict[str, float]:
    import trio

    from giants.core.launcher import LocalCluster
    from giants.core.plugins import UpOptions

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-raft-") as tmp:
        cluster = LocalCluster("raft", UpOptions(3, 0, tmp), log=io.StringIO())
        with cluster:
            endpoints = cluster.endpoints["node"]
            rate, lat = trio.run(_load, endpoints, 1, seconds, False)
            out.update(writes_1=rate, p50_ms=_percentile(lat, 0.5) * 1e3,
                       p99_ms=_percentile(lat, 0.99) * 1e3)
            rate, lat = trio.run(_load, endpoints, CONCURRENCY, seconds, False)
            out.update(writes_32=rate, p99_32_ms=_percentile(lat, 0.99) * 1e3)
            out["reads_32"], _ = trio.run(_load, endpoints, CONCURRENCY, seconds, True)
            times = []
            for _ in range(failovers):
                victim = trio.run(_leader_name, endpoints)
                cluster.kill(victim)
                times.append(trio.run(_time_to_write, endpoints, time.monotonic()))
                cluster.restart(victim)
                time.sleep(0.5)
            out["failover_ms"] = statistics.median(times) * 1e3 if times else float("nan")
    return out


# -- PySyncObj --------------------------------------------------------------------------

_NODE_MAIN = "--pysyncobj-node"


def _pysyncobj_node(self_addr: str, partners: list[str], data_dir: str) -> None:
    """One PySyncObj node; a line protocol on stdin/stdout drives it."""
    from pysyncobj import SyncObj, SyncObjConf, SyncObjException, replicated

    class KV(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            name = self_addr.replace(":", "_")
            conf = SyncObjConf(journalFile=os.path.join(data_dir, f"{name}.journal"),
                               fullDumpFile=os.path.join(data_dir, f"{name}.dump"))
            super().__init__(self_addr, partners, conf)
            self._data: dict[str, Any] = {}

        @replicated  # type: ignore[misc]
        def set(self, key: str, value: Any) -> None:
            self._data[key] = value

        @replicated  # type: ignore[misc]
        def get(self, key: str) -> Any:
            return self._data.get(key)

    kv = KV()

    def load(concurrency: int, seconds: float, reads: bool) -> dict[str, Any]:
        latencies: list[float] = []
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        def worker(i: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                n += 1
                t0 = time.monotonic()
                try:
                    if reads:
                        kv.get(f"b{i}", sync=True, timeout=5.0)
                    else:
                        kv.set(f"b{i}", n, sync=True, timeout=5.0)
                except SyncObjException:
                    continue
                with lock:
                    latencies.append(time.monotonic() - t0)

        start = time.monotonic()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - start
        return {"rate": len(latencies) / elapsed, "p50": _percentile(latencies, 0.5),
                "p99": _percentile(latencies, 0.99)}

    def write_until_ok() -> dict[str, Any]:
        while True:
            try:
                kv.set("failover", 1, sync=True, timeout=1.0)
                return {"ok": True}
            except SyncObjException:
                time.sleep(0.01)

    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "status":
            status = kv.getStatus()
            leader = status.get("leader")
            reply: dict[str, Any] = {"leader": str(leader) if leader else None,
                                     "self": self_addr}
        elif cmd[0] == "load":
            reply = load(int(cmd[1]), float(cmd[2]), cmd[3] == "reads")
        elif cmd[0] == "write":
            reply = write_until_ok()
        else:
            reply = {"error": cmd[0]}
        print(json.dumps(reply), flush=True)


class _PyNode:
    def __init__(self, addr: str, partners: list[str], data_dir: str) -> None:
        self.addr, self.partners, self.data_dir = addr, partners, data_dir
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), _NODE_MAIN, self.addr, self.data_dir,
             *self.partners], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)

    def ask(self, line: str) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return reply

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def _py_leader(nodes: list[_PyNode], timeout_s: float = 30.0) -> _PyNode:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for node in nodes:
            if node.proc is not None and node.ask("status")["leader"] == node.addr:
                return node
        time.sleep(0.05)
    raise RuntimeError("pysyncobj elected no leader")


def measure_pysyncobj(seconds: float, failovers: int) -> dict[str, float]:
    from giants.core.launcher import free_port

    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pysyncobj-") as tmp:
        nodes = [_PyNode(a, [b for b in addrs if b != a], tmp) for a in addrs]
        try:
            leader = _py_leader(nodes)
            one = leader.ask(f"load 1 {seconds} writes")
            out.update(writes_1=one["rate"], p50_ms=one["p50"] * 1e3, p99_ms=one["p99"] * 1e3)
            many = leader.ask(f"load {CONCURRENCY} {seconds} writes")
            out.update(writes_32=many["rate"], p99_32_ms=many["p99"] * 1e3)
            out["reads_32"] = leader.ask(f"load {CONCURRENCY} {seconds} reads")["rate"]
            times = []
            for _ in range(failovers):
                leader = _py_leader(nodes)
                survivor = next(n for n in nodes if n is not leader)
                killed_at = time.monotonic()
                leader.kill()
                survivor.ask("write")
                times.append(time.monotonic() - killed_at)
                leader.start()
                _py_leader(nodes)
                time.sleep(0.5)
            out["failover_ms"] = statistics.median(times) * 1e3 if times else float("nan")
        finally:
            for node in nodes:
                node.kill()
    return out


# -- the table --------------------------------------------------------------------------

ROWS = [
    ("committed writes/s, 1 client", "writes_1", True),
    (f"committed writes/s, {CONCURRENCY} clients", "writes_32", True),
    ("write latency p50 (ms), 1 client", "p50_ms", False),
    ("write latency p99 (ms), 1 client", "p99_ms", False),
    (f"write latency p99 (ms), {CONCURRENCY} clients", "p99_32_ms", False),
    (f"linearizable reads/s, {CONCURRENCY} clients", "reads_32", True),
    ("leader failover (ms, median)", "failover_ms", False),
]


def measure(seconds: float = 5.0, failovers: int = 10) -> dict[str, dict[str, float]]:
    """Both systems' figures (see the module docstring)."""
    return {"giants": measure_giants(seconds, failovers),
            "pysyncobj": measure_pysyncobj(seconds, failovers)}


def table(results: dict[str, dict[str, float]]) -> str:
    ours, peer = results["giants"], results["pysyncobj"]
    lines = [f"{'3-node cluster, loopback':<40} {'giants-raft':>12} {'pysyncobj':>12} "
             f"{'ratio':>7}  goal"]
    for label, key, higher_better in ROWS:
        a, b = ours.get(key, float("nan")), peer.get(key, float("nan"))
        ratio = (a / b if higher_better else b / a) if a and b else float("nan")
        goal = f">= {GOAL_RATIO:.0f}x" if key == "writes_32" else ""
        lines.append(f"{label:<40} {a:>12.1f} {b:>12.1f} {ratio:>6.2f}x  {goal}")
    lines.append("(ratio > 1: giants better; latencies and failover compare peer/ours)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == _NODE_MAIN:
        _pysyncobj_node(argv[1], argv[3:], argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per throughput phase")
    ap.add_argument("--failovers", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results = measure(args.seconds, args.failovers)
    print(json.dumps(results) if args.json else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
