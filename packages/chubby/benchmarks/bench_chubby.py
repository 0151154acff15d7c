"""Benchmark: a five-replica Chubby cell (Raft, SQLite store) on 127.0.0.1, against the
physical limit measured in the same run: the same TCP transport answering every request
at once from a trivial in-process echo server (Chubby §4: "KeepAlives dominate" and
caching keeps the master's load flat).

Figures:

* **KeepAlive capacity**: sessions one master keeps at a 1 s KeepAlive interval (lease
  1.25 s, replies held until 0.25 s before its end) before KeepAlive latency degrades
  (p99 of reply interval beyond 1 s + 100 ms, or any session lost). Reference: the
  echo server's request rate with 256 requests in flight = sessions it could serve at
  one request per second.
* **uncached read rate**: sequential GetContentsAndStat through the master (a read
  barrier each). Reference: sequential echo round trips per second.
* **cached read rate**: the same reads with the client cache on. Reference: the
  uncached rate (the goal is the paper's point: a cache hit costs no RPC).
* **lock acquire+release rate**: sequential pairs, each a replicated write.
  Reference: sequential echo round trips per second (two per pair).

Usage: ``python packages/chubby/benchmarks/bench_chubby.py [--quick]`` (what
``nox -s bench -- chubby`` runs). Prints one table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import trio

from giants.chubby._messages import (
    CreateSession,
    KeepAlive,
    KeepAliveReply,
    MasterInfo,
    SessionInfo,
    WhereIsMaster,
)
from giants.chubby.client import ChubbyClient, ClientOptions
from giants.chubby.testing import find_master, start_cell
from giants.core.envelope import Envelope
from giants.core.errors import GiantsError
from giants.core.host import MemoryDurableStore, run_process
from giants.core.process import Io
from giants.core.transport import tcp

LEASE_S = 1.25
MARGIN_S = 0.25
INTERVAL_S = LEASE_S - MARGIN_S
DEGRADED_S = 0.100
INFLIGHT = 256


class Echo:
    """A process that answers every request at once: the transport's own limit."""

    def start(self, io: Io) -> None:
        pass

    def tick(self, io: Io) -> None:
        pass

    def receive(self, io: Io, env: Envelope) -> None:
        io.reply(env, MasterInfo(None, 0, {}))


async def echo_rates(duration_s: float) -> tuple[float, float]:
    """(sequential round trips/s, requests/s with INFLIGHT in flight)."""
    async with trio.open_nursery() as nursery:
        async with tcp.serve("echo", listen="127.0.0.1:0", peers={}) as ep:
            await nursery.start(lambda task_status: run_process(
                lambda _d: Echo(), node_id="echo", endpoint=ep, store=MemoryDurableStore(),
                task_status=task_status))
            async with tcp.Client("bench-echo") as client:
                seq = await _rate(duration_s, 1, lambda: client.request(
                    ep.address, WhereIsMaster(), timeout=5))
                par = await _rate(duration_s, INFLIGHT, lambda: client.request(
                    ep.address, WhereIsMaster(), timeout=5))
            nursery.cancel_scope.cancel()
    return seq, par


async def _rate(duration_s: float, workers: int, fn: Any) -> float:
    count = 0
    end = trio.current_time() + duration_s

    async def worker() -> None:
        nonlocal count
        while trio.current_time() < end:
            await fn()
            count += 1

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    return count / (trio.current_time() - start)


async def keepalive_round(master: str, sessions: int, duration_s: float) -> tuple[float, int]:
    """(p99 lateness of KeepAlive replies in s, sessions lost) for ``sessions`` sessions."""
    lateness: list[float] = []
    lost = 0
    async with tcp.Client(f"bench-ka-{sessions}") as client:
        ids: list[tuple[int, int]] = []

        async def create(i: int) -> None:
            info = await client.request(master, CreateSession("bench", f"b{sessions}-{i}"),
                                        timeout=30)
            assert isinstance(info, SessionInfo)
            ids.append((info.session, info.epoch))

        async with trio.open_nursery() as nursery:
            for i in range(sessions):
                nursery.start_soon(create, i)
        end = trio.current_time() + duration_s

        async def keep(sid: int, epoch: int) -> None:
            nonlocal lost
            last = None
            while trio.current_time() < end:
                try:
                    reply = await client.request(master, KeepAlive(sid, epoch, 1 << 40),
                                                 timeout=LEASE_S * 2)
                except GiantsError:
                    lost += 1
                    return
                assert isinstance(reply, KeepAliveReply)
                now = trio.current_time()
                if last is not None:
                    lateness.append(now - last - INTERVAL_S)
                last = now

        async with trio.open_nursery() as nursery:
            for sid, epoch in ids:
                nursery.start_soon(keep, sid, epoch)
    lateness.sort()
    p99 = lateness[int(len(lateness) * 0.99)] if lateness else float("inf")
    return p99, lost


async def client_rates(endpoints: list[str], duration_s: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for cached in (False, True):
        opts = ClientOptions(cache=cached, op_timeout_s=10.0)
        async with ChubbyClient(endpoints, user="bench", options=opts) as c:
            h = await c.open("/ls/cell/bench-file", "rw", create="file")
            await c.write(h, b"x" * 256)
            await c.read(h)
            out["cached" if cached else "uncached"] = await _rate(
                duration_s, 1, lambda c=c, h=h: c.read(h))
    async with ChubbyClient(endpoints, user="bench") as c:
        h = await c.open("/ls/cell/bench-lock", "l", create="file")

        async def pair() -> None:
            await c.acquire(h)
            await c.release(h)

        out["lock"] = await _rate(duration_s, 1, pair)
    return out


async def main(quick: bool) -> None:
    duration = 2.0 if quick else 4.0
    seq_rtt, par_rate = await echo_rates(duration)
    with tempfile.TemporaryDirectory(prefix="giants-chubby-bench-") as tmp:
        cluster = await trio.to_thread.run_sync(lambda: start_cell(
            tmp, 5, lease_s=LEASE_S, keepalive_margin_s=MARGIN_S, lock_delay_s=1.0))
        try:
            endpoints = cluster.endpoints["replica"]
            master_id, _ = await find_master(endpoints)
            master = endpoints[int(master_id.rsplit("-", 1)[1])]
            rates = await client_rates(endpoints, duration)
            capacity = 0
            rounds = []
            for n in ((100, 400) if quick else (250, 500, 1000, 1500, 2000, 3000, 4000)):
                p99, lost = await keepalive_round(master, n, duration + INTERVAL_S * 2)
                rounds.append((n, p99, lost))
                print(f"  {n} sessions: KeepAlive p99 lateness {p99 * 1000:.0f} ms, lost {lost}",
                      flush=True)
                if p99 > DEGRADED_S or lost:
                    break
                capacity = n
                await trio.sleep(LEASE_S * 2)   # let this round's sessions expire
        finally:
            await trio.to_thread.run_sync(cluster.stop)
    rows = [
        ("KeepAlive capacity (sessions @ 1 s)", capacity,
         f"echo req/s ({INFLIGHT} in flight)", par_rate, 0.05),
        ("uncached read (ops/s, sequential)", rates["uncached"],
         "echo round trips/s", seq_rtt, 0.2),
        ("cached read (ops/s, sequential)", rates["cached"],
         "uncached read ops/s", rates["uncached"], 10.0),
        ("lock acquire+release (pairs/s)", rates["lock"],
         "echo round trips/s / 2", seq_rtt / 2, 0.05),
    ]
    print()
    print(f"{'metric':38} {'ours':>10}  {'reference':30} {'ref':>10} {'ratio':>7} {'goal':>7}")
    for name, ours, ref_name, ref, goal in rows:
        ratio = ours / ref if ref else 0.0
        ok = "ok" if ratio >= goal else "below"
        print(f"{name:38} {ours:10.0f}  {ref_name:30} {ref:10.0f} {ratio:7.3f} "
              f"{'>=' + str(goal):>7} {ok}")
    print(f"(KeepAlive rounds: {', '.join(f'{n}: p99 +{p * 1000:.0f} ms lost {lo}' for n, p, lo in rounds)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    trio.run(main, args.quick)
    print(f"(took {time.monotonic() - started:.0f}s)")
