"""``giants demo chubby``: master fail-over on real processes (Chubby §2.12).

Starts a cell of five replicas (``--consensus raft|paxos`` via ``--set``), opens a
session that takes a lock and writes a file, reads it from the cache, SIGKILLs the
master, and watches the client go through jeopardy (or not) and the fail-over event
while the new master takes over. Then checks: same session, never expired, the lock
still held (the new master accepts the sequencer and refuses a rival), the file intact.
It measures the fail-over time, writes a trace of what the client saw
(``.giants/traces/demo-chubby.trace.jsonl``) and a simulated fail-over trace rendered
as a space-time diagram, and returns 0 only if every check passed.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import trio

from giants.chubby.client import ChubbyClient, ClientOptions
from giants.chubby.testing import find_master, start_cell
from giants.core.trace import TraceWriter

__all__ = ["run_demo"]

CELL = {"lease_s": 2.0, "keepalive_margin_s": 0.5, "lock_delay_s": 2.0}
CLIENT = ClientOptions(grace_s=15.0, attempt_s=0.5, op_timeout_s=20.0, resend_before_s=0.4)
TRACE_DIR = ".giants/traces"


def _say(text: str) -> None:
    print(f"[chubby demo] {text}", flush=True)


async def _scenario(cluster: Any, trace: TraceWriter) -> list[tuple[str, bool]]:
    t0 = time.monotonic()
    endpoints = cluster.endpoints["replica"]

    def note(kind: str, **fields: Any) -> None:
        trace.event(time.monotonic() - t0, "demo", kind, **fields)

    master, epoch = await find_master(endpoints)
    _say(f"cell up: {len(endpoints)} replicas, master {master} (epoch {epoch})")
    checks: list[tuple[str, bool]] = []
    async with ChubbyClient(endpoints, user="demo", options=CLIENT) as c:
        session = c.session
        h = await c.open("/ls/cell/demo-lock", "rwl", create="file", events=("modified",))
        seq = await c.acquire(h)
        await c.write(h, b"owned by the demo client")
        await c.read(h)
        await c.read(h)
        _say(f"session {session} holds the lock, sequencer {seq}; "
             f"cache hits so far {c.core.stats['cache_hits']}")
        note("lock_acquired", session=session, sequencer=str(seq))
        events = c.events()
        while True:         # what happened before the kill is not the point here
            try:
                events.receive_nowait()
            except trio.WouldBlock:
                break
        killed_at = time.monotonic()
        await trio.to_thread.run_sync(cluster.kill, master)
        note("kill_master", master=master)
        _say(f"SIGKILL {master}")
        seen: list[str] = []
        with trio.move_on_after(30):
            async for ev in events:
                seen.append(ev[0])
                note("client_event", event=ev[0], detail=str(ev[2]))
                _say(f"  client event: {ev[0]} {ev[2]}  (+{time.monotonic() - killed_at:.2f}s)")
                if ev[0] in ("failover", "expired"):
                    break
        failover_s = time.monotonic() - killed_at
        new_master, new_epoch = await find_master(endpoints)
        _say(f"new master {new_master} (epoch {new_epoch}) after {failover_s:.2f}s")
        note("new_master", master=new_master, epoch=new_epoch, failover_s=failover_s)
        checks.append(("a new master with a higher epoch", new_master != master
                       and new_epoch > epoch))
        checks.append(("client saw the fail-over event", "failover" in seen))
        checks.append(("session never expired", "expired" not in seen and c.state == "safe"
                       and c.session == session))
        checks.append(("sequencer still valid at the new master",
                       await c.check_sequencer(seq)))
        data, _ = await c.read(h)
        checks.append(("file contents intact", data == b"owned by the demo client"))
        async with ChubbyClient(endpoints, user="rival", options=CLIENT) as rival:
            rh = await rival.open("/ls/cell/demo-lock", "l")
            checks.append(("a rival cannot take the lock", await rival.try_acquire(rh) is None))
        await c.release(h)
        checks.append(("after release the old sequencer is stale",
                       not await c.check_sequencer(seq)))
    return checks


def _simulated_trace(trace_dir: str) -> str:
    from giants.chubby.sim import check_run, quorum_outage, run_chubby_sim
    from giants.core.trace_html import render_file

    path = os.path.join(trace_dir, "chubby-sim-failover.trace.jsonl")
    trace = TraceWriter()
    run = run_chubby_sim(1, consensus="raft", nemesis=(), clients=2, ops_s=4.0, trace=trace,
                         kill_master_at=None, schedule=quorum_outage(1.5, 2.5))
    trace.save(path)
    problems = check_run(run)
    html = render_file(path)
    return f"{html} ({'checks pass' if not problems else problems})"


def run_demo(args: Any) -> int:
    extra = dict(getattr(args, "extra", None) or {})
    trace_dir = str(getattr(args, "trace_dir", None) or TRACE_DIR)
    os.makedirs(trace_dir, exist_ok=True)
    trace_path = os.path.join(trace_dir, "demo-chubby.trace.jsonl")
    with tempfile.TemporaryDirectory(prefix="giants-chubby-demo-") as tmp:
        _say(f"starting 5 replicas on {extra.get('consensus', 'raft')} ...")
        cluster = start_cell(tmp, 5, **{**CELL, **extra})
        try:
            with open(trace_path, "w", encoding="utf-8") as f:
                checks = trio.run(_scenario, cluster, TraceWriter(f))
        finally:
            cluster.stop()
    for name, ok in checks:
        _say(f"{'PASS' if ok else 'FAIL'}  {name}")
    _say(f"client trace: {trace_path}")
    try:
        _say(f"simulated fail-over, space-time diagram: {_simulated_trace(trace_dir)}")
    except (OSError, ValueError) as exc:
        _say(f"(could not render the simulated trace: {exc})")
    verdict = all(ok for _, ok in checks)
    _say(f"verdict: {'PASS' if verdict else 'FAIL'}")
    return 0 if verdict else 1
