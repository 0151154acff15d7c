"""``giants demo paxos``: kill the Multi-Paxos leader of a real cluster under load.

Three ``giants up``-style node processes on 127.0.0.1 (``LocalCluster``), clients
writing through ``KVClient``; the leader process gets SIGKILL; a new leader runs phase 1
and the clients carry on; then every acknowledged write is read back and the whole
client history is checked for linearizability. The client operations and the kill go to
a trace file (``giants trace FILE`` renders it).

``kill_leader_under_load`` takes the system name, so the benchmark measures Raft's
failover the same way.
"""

from __future__ import annotations

import os
import shutil
import statistics
from dataclasses import dataclass, field
from typing import Any

import trio

from giants.core.errors import DefiniteError, GiantsError
from giants.core.kvclient import KVClient
from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions
from giants.core.testing.history import History
from giants.core.testing.linearizability import check_kv_linearizable
from giants.core.trace import TraceWriter

__all__ = ["KillReport", "kill_leader_under_load", "run_demo", "leader_instance"]

# How long a client keeps retrying one operation across the failover.
OP_TIMEOUT_S = 10.0
# Keys the clients also read and compare-and-set, so the history checks real races.
SHARED_KEYS = ("x", "y")


@dataclass
class KillReport:
    system: str
    killed: str
    new_leader: str | None
    ok_before: int
    ok_after: int
    resumed_after_s: float | None
    acked_writes: int
    lost_writes: list[str] = field(default_factory=list)
    linearizable: bool = False
    explain: str = ""

    @property
    def passed(self) -> bool:
        return (not self.lost_writes and self.linearizable and self.ok_after > 0
                and self.new_leader not in (None, self.killed))


def leader_instance(cluster: LocalCluster, address: str | None) -> str | None:
    """The instance name (``node-1``) serving ``address``."""
    for i, ep in enumerate(cluster.endpoints.get("node", [])):
        if ep == address:
            return f"node-{i}"
    return None


async def _find_leader(endpoints: list[str], timeout_s: float = 15.0) -> str | None:
    async with KVClient(endpoints, op_timeout_s=timeout_s) as kv:
        with trio.move_on_after(timeout_s):
            while True:
                addr = await kv.leader()
                if addr is not None:
                    return addr
                await trio.sleep(0.05)
    return None


class _Load:
    """Client tasks writing unique keys and racing on shared ones, recording a History."""

    def __init__(self, endpoints: list[str], history: History) -> None:
        self.endpoints = endpoints
        self.history = history
        self.acked: dict[str, int] = {}
        self.ok_times: list[tuple[float, float]] = []  # (invoked, acknowledged)
        self.stop = False
        self._gen = 0

    async def client(self, n: int) -> None:
        async with KVClient(self.endpoints, op_timeout_s=OP_TIMEOUT_S) as kv:
            i = 0
            proc = f"w{n}.0"
            value: Any
            call: Any
            while not self.stop:
                i += 1
                if i % 3 == 0:
                    key = SHARED_KEYS[i % len(SHARED_KEYS)]
                    f, value, call = "get", None, kv.get(key)
                elif i % 5 == 0:
                    key = SHARED_KEYS[i % len(SHARED_KEYS)]
                    f, value, call = "put", f"{n}:{i}", kv.put(key, f"{n}:{i}")
                else:
                    key = f"w{n}-{i}"
                    f, value, call = "put", i, kv.put(key, i)
                started = trio.current_time()
                op = self.history.invoke(proc, f, value, key=key, time=started)
                try:
                    result = await call
                except GiantsError as exc:
                    self.history.error(op, exc, time=trio.current_time())
                    if not isinstance(exc, DefiniteError):
                        self._gen += 1
                        proc = f"w{n}.{self._gen}"
                    continue
                now = trio.current_time()
                self.history.ok(op, result if f == "get" else value, time=now)
                self.ok_times.append((started, now))
                if f == "put" and key.startswith("w"):
                    self.acked[key] = value


async def _drive(cluster: LocalCluster, system: str, *, clients: int, before_s: float,
                 after_s: float, history: History, trace: TraceWriter | None,
                 say: Any) -> KillReport:
    endpoints = cluster.endpoints["node"]
    leader_addr = await _find_leader(endpoints)
    killed = leader_instance(cluster, leader_addr)
    assert killed is not None, f"{system}: no leader elected"
    say(f"  leader is {killed} ({leader_addr}); {clients} clients writing")
    load = _Load(endpoints, history)
    async with trio.open_nursery() as nursery:
        for n in range(clients):
            nursery.start_soon(load.client, n)
        await trio.sleep(before_s)
        ok_before = len(load.ok_times)
        await trio.to_thread.run_sync(cluster.kill, killed)
        kill_at = trio.current_time()  # the process has exited
        if trace is not None:
            trace.event(kill_at, killed, "fault", what="crash", how="SIGKILL")
        say(f"  SIGKILL {killed} after {ok_before} acknowledged operations")
        await trio.sleep(after_s)
        load.stop = True
    # unavailability as clients saw it: the first operation invoked after the leader
    # died and acknowledged
    after = [done for started, done in load.ok_times if started > kill_at]
    resumed = (min(after) - kill_at) if after else None
    new_addr = await _find_leader(endpoints)
    report = KillReport(system, killed, leader_instance(cluster, new_addr), ok_before,
                        len(after), resumed, len(load.acked))
    say(f"  new leader {report.new_leader}; first write acknowledged "
        f"{(resumed or 0) * 1000:.0f} ms after the kill; {len(after)} operations since")
    say(f"  (clients: {len(load.ok_times)} operations acknowledged in all)")
    async with KVClient(endpoints, op_timeout_s=OP_TIMEOUT_S) as kv:
        for key, value in sorted(load.acked.items()):
            op = history.invoke("reader", "get", None, key=key, time=trio.current_time())
            got = await kv.get(key)
            history.ok(op, got, time=trio.current_time())
            if got != value:
                report.lost_writes.append(f"{key}: wrote {value}, read {got}")
    result = check_kv_linearizable(history)
    report.linearizable, report.explain = result.ok, "" if result.ok else result.explain()
    return report


def kill_leader_under_load(system: str, data_dir: str, *, nodes: int = 3, clients: int = 4,
                           before_s: float = 1.5, after_s: float = 3.0,
                           trace: TraceWriter | None = None, say: Any = print,
                           extra: dict[str, Any] | None = None) -> KillReport:
    """Start ``system`` as real processes, load it, SIGKILL its leader, read back."""
    shutil.rmtree(data_dir, ignore_errors=True)
    history = History(trace=trace)
    opts = UpOptions(nodes, 0, data_dir, extra=dict(extra or {}))
    with open(os.devnull, "w") as quiet, LocalCluster(system, opts, log=quiet) as cluster:
        say(f"  started {nodes} {system} node processes: {', '.join(cluster.endpoints['node'])}")
        return trio.run(lambda: _drive(cluster, system, clients=clients, before_s=before_s,
                                       after_s=after_s, history=history, trace=trace, say=say))


def run_demo(args: Any) -> int:
    trace_dir = getattr(args, "trace_dir", None) or ".giants/traces"
    data_dir = os.path.join(getattr(args, "data_dir", None) or ".giants/demo", "paxos")
    os.makedirs(trace_dir, exist_ok=True)
    trace = TraceWriter()
    print("paxos demo: kill the Multi-Paxos leader under load (real processes)")
    report = kill_leader_under_load("paxos", data_dir, trace=trace)
    path = os.path.join(trace_dir, "paxos-demo.trace.jsonl")
    trace.save(path)
    print(f"  read back {report.acked_writes} acknowledged writes: "
          f"{len(report.lost_writes)} lost {report.lost_writes[:3] if report.lost_writes else ''}")
    print(f"  history linearizable: {report.linearizable} {report.explain[:500]}")
    print(f"  trace: {path}   (render: giants trace {path})")
    print(f"verdict: {'PASS' if report.passed else 'FAIL'}")
    return 0 if report.passed else 1


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")
