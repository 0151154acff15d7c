"""Benchmark: the Paxos KV service beside the Raft KV service, measured the same way.

``nox -s bench -- paxos`` (or ``python packages/paxos/benchmarks/bench_paxos.py``).
For each system (``paxos``, then ``raft`` if installed) a fresh 3-node cluster of real
processes on 127.0.0.1 (``LocalCluster``, as ``giants up`` starts it), driven by the
core's ``KVClient`` from this process:

* writes/s with 1 client and with 32 concurrent clients (closed loop, ``put``);
* p50 / p99 write latency of the 1-client run;
* linearizable reads/s with 32 clients (``get``: a read barrier each);
* failover: SIGKILL the leader, time until a write invoked after the kill is
  acknowledged; restart the node, repeat; the median of 10.

The machine is shared, so each system is measured in ``--rounds`` rounds (default 2)
in A-B-B-A order and the table shows each figure's best round (every kill counts for
failover).

Prints one table with both systems' figures, the ratio and the goal. Options:
``--seconds S`` per throughput phase (default 3), ``--kills N`` (default 10, in all),
``--rounds R`` (default 2), ``--systems paxos,raft``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

import trio

from giants.core.errors import GiantsError, IndefiniteError
from giants.core.kvclient import KVClient
from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions, load_registry

NODES = 3
MANY_CLIENTS = 32
OP_TIMEOUT_S = 10.0
FAILOVER_TIMEOUT_S = 10.0


@dataclass
class Figures:
    system: str
    writes_1: float = float("nan")
    writes_32: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    reads_32: float = float("nan")
    failover_ms: list[float] = field(default_factory=list)

    @property
    def failover_median_ms(self) -> float:
        return statistics.median(self.failover_ms) if self.failover_ms else float("nan")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _closed_loop(endpoints: list[str], clients: int, seconds: float, op: str,
                       latencies: list[float] | None = None) -> float:
    """Ops/s of ``clients`` closed-loop tasks for ``seconds`` (after a short warm-up)."""
    done = 0
    async with KVClient(endpoints, op_timeout_s=OP_TIMEOUT_S) as kv:
        await kv.put("warm", 0)

        async def worker(n: int, stop_at: float) -> None:
            nonlocal done
            i = 0
            while trio.current_time() < stop_at:
                i += 1
                t0 = trio.current_time()
                try:
                    if op == "put":
                        await kv.put(f"k{n}-{i % 100}", i)
                    else:
                        await kv.get(f"k{n}-{i % 100}")
                except IndefiniteError:
                    continue  # a timeout on an overloaded machine: not counted

                if latencies is not None:
                    latencies.append(trio.current_time() - t0)
                done += 1

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for n in range(clients):
                nursery.start_soon(worker, n, start + seconds)
        return done / (trio.current_time() - start)


async def _leader_name(cluster: LocalCluster) -> str:
    endpoints = cluster.endpoints["node"]
    async with KVClient(endpoints, op_timeout_s=OP_TIMEOUT_S) as kv:
        with trio.fail_after(FAILOVER_TIMEOUT_S):
            while True:
                addr = await kv.leader()
                if addr in endpoints:
                    return f"node-{endpoints.index(addr)}"
                await trio.sleep(0.02)


async def _one_failover(cluster: LocalCluster, n: int) -> float:
    """SIGKILL the leader; seconds until a write invoked after it died is acknowledged."""
    victim = await _leader_name(cluster)
    await trio.to_thread.run_sync(cluster.kill, victim)
    died = trio.current_time()
    async with KVClient(cluster.endpoints["node"], op_timeout_s=FAILOVER_TIMEOUT_S) as kv:
        await kv.put(f"failover-{n}", n)
    took = trio.current_time() - died
    await trio.to_thread.run_sync(cluster.restart, victim)
    return took


async def _measure(cluster: LocalCluster, fig: Figures, seconds: float, kills: int) -> None:
    endpoints = cluster.endpoints["node"]
    await _leader_name(cluster)
    lat: list[float] = []
    fig.writes_1 = await _closed_loop(endpoints, 1, seconds, "put", lat)
    fig.p50_ms, fig.p99_ms = _pct(lat, 0.50) * 1000, _pct(lat, 0.99) * 1000
    fig.writes_32 = await _closed_loop(endpoints, MANY_CLIENTS, seconds, "put")
    fig.reads_32 = await _closed_loop(endpoints, MANY_CLIENTS, seconds, "get")
    for n in range(kills):
        fig.failover_ms.append(await _one_failover(cluster, n) * 1000)
        await trio.sleep(0.5)  # let the restarted node catch up before the next kill


def measure(system: str, *, seconds: float = 3.0, kills: int = 10) -> Figures:
    """Start a 3-node ``system`` cluster as ``giants up`` would and measure it."""
    fig = Figures(system)
    with tempfile.TemporaryDirectory(prefix=f"bench-{system}-") as data, \
            open(os.devnull, "w") as quiet, \
            LocalCluster(system, UpOptions(NODES, 0, data), log=quiet) as cluster:
        trio.run(_measure, cluster, fig, seconds, kills)
    return fig


def _installed(system: str) -> bool:
    if importlib.util.find_spec(f"giants.{system}") is None:
        return False
    try:
        load_registry().system(system)
    except GiantsError:
        return False
    return True


def _fmt(v: float | None, digits: int = 0) -> str:
    if v is None or v != v:
        return "-"
    return f"{v:,.{digits}f}"


def table(ours: Figures, peer: Figures | None, peer_note: str) -> str:
    rows = [
        ("writes/s, 1 client", "writes_1", 0, "~raft (ratio >= 0.8)"),
        (f"writes/s, {MANY_CLIENTS} clients", "writes_32", 0, "~raft (ratio >= 0.8)"),
        ("write p50 ms, 1 client", "p50_ms", 2, "1 majority RTT + fsync"),
        ("write p99 ms, 1 client", "p99_ms", 2, "~raft"),
        (f"linearizable reads/s, {MANY_CLIENTS} clients", "reads_32", 0, "~raft"),
        ("failover ms, median of kills", "failover_median_ms", 0, "< 1000 (timeouts 150-300 ms)"),
    ]
    head = ["metric", "paxos", "raft", "paxos/raft", "goal"]
    body = []
    for label, attr, digits, goal in rows:
        a = getattr(ours, attr)
        b = getattr(peer, attr) if peer is not None else None
        ratio = _fmt(a / b, 2) if b not in (None, 0) and b == b and a == a else "-"
        body.append([label, _fmt(a, digits), _fmt(b, digits) if peer else peer_note, ratio, goal])
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def best_of(system: str, rounds: list[Figures]) -> Figures:
    """Each throughput's best round, each latency's best round, every failover kill."""
    return Figures(
        system,
        writes_1=max(r.writes_1 for r in rounds), writes_32=max(r.writes_32 for r in rounds),
        p50_ms=min(r.p50_ms for r in rounds), p99_ms=min(r.p99_ms for r in rounds),
        reads_32=max(r.reads_32 for r in rounds),
        failover_ms=[ms for r in rounds for ms in r.failover_ms])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--kills", type=int, default=10, help="in all, spread over the rounds")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds per system, in A B B A order (the machine is shared)")
    ap.add_argument("--systems", default="paxos,raft")
    args = ap.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    notes = {s: "not installed" for s in systems if not _installed(s)}
    for s in notes:
        print(f"{s}: not installed; its column says so", file=sys.stderr)
    present = [s for s in systems if s not in notes]
    order: list[str] = []
    for r in range(args.rounds):
        order += present if r % 2 == 0 else present[::-1]
    kills = max(1, args.kills // max(1, args.rounds))
    rounds: dict[str, list[Figures]] = {s: [] for s in present}
    for system in order:
        t0 = time.monotonic()
        print(f"measuring {system} ({NODES} nodes, {args.seconds:.0f}s per phase, "
              f"{kills} kills)...", file=sys.stderr, flush=True)
        rounds[system].append(measure(system, seconds=args.seconds, kills=kills))
        print(f"  done in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    results = {s: best_of(s, figs) for s, figs in rounds.items()}
    ours = results.get("paxos", Figures("paxos"))
    print(f"\nPaxos vs Raft KV service, {NODES} nodes on 127.0.0.1, same core, same client, "
          f"same run; best of {args.rounds} rounds per system in A-B-B-A order "
          f"(failover: median of {len(ours.failover_ms)} kills)")
    print(table(ours, results.get("raft"), notes.get("raft", "-")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
