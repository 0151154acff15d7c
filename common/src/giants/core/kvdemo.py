"""``giants demo`` for replicated KV systems (kv on solo, raft, paxos).

The key scenario, end to end on real processes: start the cluster, run concurrent
clients writing and reading, SIGKILL the leader in the middle of it, wait for the
service to come back (a new leader, or the restarted node for a single-node cluster),
restart the killed node, read every key, and check the whole history -- including those
final reads -- for linearizability. Then the same workload runs in the simulator under
a nemesis and its trace is written and rendered for viewing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

import trio

from giants.core.consensus import ConsensusFactory
from giants.core.errors import DefiniteError, GiantsError
from giants.core.kvclient import KVClient
from giants.core.kvsim import run_kv_sim
from giants.core.launcher import LocalCluster
from giants.core.plugins import UpOptions
from giants.core.testing.history import History
from giants.core.testing.linearizability import check_kv_linearizable
from giants.core.trace import TraceWriter

__all__ = ["demo_replicated_kv"]

KEYS = [f"k{i}" for i in range(5)]


def _say(text: str) -> None:
    print(f"  {text}", flush=True)


async def _client_loop(name: str, endpoints: list[str], history: History, stop: trio.Event,
                       counter: list[int]) -> None:
    generation = 0
    n = 0
    async with KVClient(endpoints, op_timeout_s=8.0) as kv:
        while not stop.is_set():
            n += 1
            key = KEYS[n % len(KEYS)]
            proc = f"{name}.{generation}"
            now = trio.current_time()
            if n % 3 == 0:
                op = history.invoke(proc, "get", None, key=key, time=now)
                call: Any = kv.get(key)
            else:
                value = f"{name}-{n}"
                op = history.invoke(proc, "put", value, key=key, time=now)
                call = kv.put(key, value)
            try:
                result = await call
            except DefiniteError as exc:
                history.fail(op, time=trio.current_time(), error=str(exc))
                continue
            except GiantsError as exc:
                history.info(op, time=trio.current_time(), error=str(exc))
                generation += 1
                continue
            history.ok(op, result if n % 3 == 0 else None, time=trio.current_time())
            counter[0] += 1


async def _workload(cluster: LocalCluster, endpoints: list[str], history: History,
                    nodes: int) -> dict[str, Any]:
    stop = trio.Event()
    counter = [0]
    out: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(_client_loop, f"c{i}", endpoints, history, stop, counter)
        await trio.sleep(1.5)
        out["before"] = counter[0]
        _say(f"{counter[0]} operations acknowledged; finding the leader ...")
        async with KVClient(endpoints) as probe:
            leader_addr = await probe.leader()
        victim = f"node-{endpoints.index(leader_addr)}" if leader_addr in endpoints else "node-0"
        _say(f"leader is {victim} ({leader_addr}); SIGKILL it")
        cluster.kill(victim)
        killed_at = trio.current_time()
        at_kill = counter[0]
        if nodes == 1:
            _say("single node: the service is down until it restarts; restarting it")
            await trio.to_thread.run_sync(cluster.restart, victim)
        while counter[0] == at_kill:
            await trio.sleep(0.01)
            if trio.current_time() - killed_at > 20:
                break
        out["recovery_s"] = trio.current_time() - killed_at
        _say(f"service answering again {out['recovery_s'] * 1000:.0f} ms after the kill")
        await trio.sleep(1.5)
        if nodes > 1:
            _say(f"restarting {victim} on its data dir")
            await trio.to_thread.run_sync(cluster.restart, victim)
            await trio.sleep(1.0)
        stop.set()
    out["after"] = counter[0]
    async with KVClient(endpoints) as kv:
        for key in KEYS:
            op = history.invoke("final", "get", None, key=key, time=trio.current_time())
            history.ok(op, await kv.get(key), time=trio.current_time())
    return out


def demo_replicated_kv(system: str, *, nodes: int, sim_factory: ConsensusFactory, args: Any,
                       options: dict[str, Any] | None = None) -> int:
    print(f"== giants demo {system}: {nodes}-node replicated KV, kill the leader under load ==",
          flush=True)
    base = getattr(args, "data_dir", None) or tempfile.mkdtemp(prefix=f"giants-demo-{system}-")
    base = os.path.join(base, system)  # each demo its own fresh directory
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(".giants/traces", exist_ok=True)
    trace_path = os.path.join(".giants/traces", f"demo-{system}-real.trace.jsonl")
    t0 = time.monotonic()
    with open(trace_path, "w", encoding="utf-8") as trace_file, \
            open(os.devnull, "w") as devnull:
        history = History(trace=TraceWriter(trace_file))
        cluster = LocalCluster(system, UpOptions(nodes, 0, os.path.join(base, "cluster")),
                               log=devnull)
        with cluster:
            endpoints = cluster.endpoints["node"]
            _say(f"started {nodes} node process(es): {', '.join(endpoints)}")
            stats = trio.run(_workload, cluster, endpoints, history, nodes)
    result = check_kv_linearizable(history)
    ops = len(history.operations())
    _say(f"{ops} operations recorded ({stats['after']} acknowledged); final reads of every key "
         f"after the restart included")
    verdict = "PASS" if result.ok else "FAIL"
    _say(f"linearizability checker: {verdict} -- {result.explain().splitlines()[0]}")
    _say(f"client-operation trace: {trace_path}")
    print("-- the same workload in the simulator, under partitions and crashes --", flush=True)
    sim_rc = run_kv_sim(system, sim_factory, seed=1,
                        nemesis="partition,crash" if nodes > 1 else "crash,loss",
                        ops=200, nodes=max(nodes, 3) if nodes > 1 else 1, options=options,
                        clients=4 if nodes > 1 else 2)
    sim_trace = os.path.join(".giants/traces", f"{system}-seed1.trace.jsonl")
    try:
        from giants.core.trace_html import render_file

        html = render_file(sim_trace)
        _say(f"space-time diagram: {html}")
    except (ImportError, OSError, ValueError) as exc:
        _say(f"(could not render the trace: {exc})")
    ok = result.ok and sim_rc == 0
    print(f"== {system}: {'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.1f}s ==", flush=True)
    return 0 if ok else 1
