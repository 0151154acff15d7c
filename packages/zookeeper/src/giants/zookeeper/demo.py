"""``giants demo zookeeper``: the paper's session guarantees on real processes.

Three servers as OS processes; kazoo client A owns an ephemeral node, client B watches
it. SIGKILL A's server: A moves to another server with the same session and the node
stays (B's watch does not fire). SIGKILL the leader: writes resume under a new one.
A closes its session: the node goes and B's watch fires exactly once. Then the same
system in the simulator under partitions and crashes, with its checkers. Prints each
step, writes a trace, returns 0 only if every check passed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any

from giants.core.trace import TraceWriter
from giants.zookeeper.testing import leader_of, start_ensemble, wait_until

__all__ = ["run_demo"]

FAST_RETRY = {"max_tries": -1, "delay": 0.05, "max_delay": 0.5}


def _say(text: str) -> None:
    print(f"  {text}", flush=True)


def _peer(zk: Any) -> str:
    host, port = zk._connection._socket.getpeername()[:2]
    return f"{host}:{port}"


def _real_part(trace: TraceWriter, base: str) -> list[tuple[str, bool]]:
    from kazoo.client import KazooClient
    from kazoo.protocol.states import EventType, KazooState

    checks: list[tuple[str, bool]] = []
    t0 = time.monotonic()

    def event(node: str, kind: str, **fields: Any) -> None:
        trace.event(time.monotonic() - t0, node, kind, **fields)

    cluster = start_ensemble(os.path.join(base, "cluster"))
    try:
        addrs = cluster.endpoints["server"]
        names = {a: f"zk-{i}" for i, a in enumerate(addrs)}
        _say(f"started 3 server processes, client ports {', '.join(addrs)}; "
             f"leader {names[leader_of(addrs)]}")
        a = KazooClient(hosts=",".join(addrs), timeout=4.0, connection_retry=FAST_RETRY)
        b = KazooClient(hosts=",".join(addrs), timeout=4.0, connection_retry=FAST_RETRY)
        a.start(timeout=30)
        b.start(timeout=30)
        events: list[str] = []
        fired = threading.Event()
        try:
            session = a.client_id[0]
            a.create("/demo/owner", b"A", ephemeral=True, makepath=True)
            a.create("/demo/counter", b"0")
            b.sync("/")

            notices: list[str] = []
            rearm = threading.Event()

            def watcher(ev: Any) -> None:
                # kazoo keeps no watch across a lost connection: it calls every watcher
                # with a NONE event ("your connection dropped, this watch is void") and
                # does not re-register it. A watcher re-arms on reconnect (kazoo's
                # DataWatch recipe does the same), which B does in ``rearm_b``.
                if ev.type == EventType.NONE:
                    notices.append(ev.state)
                    rearm.set()
                    return
                events.append(ev.type)
                fired.set()

            def rearm_b() -> None:
                wait_until(lambda: b.state == KazooState.CONNECTED)
                if rearm.is_set():
                    rearm.clear()
                    b.exists("/demo/owner", watch=watcher)
                    event("client-B", "op", what="ok", op="exists /demo/owner watch=True",
                          why="re-armed after B's connection dropped")

            b.exists("/demo/owner", watch=watcher)
            event("client-A", "op", what="ok", op="create ephemeral /demo/owner",
                  session=hex(session))
            event("client-B", "op", what="ok", op="exists /demo/owner watch=True")
            _say(f"client A (session {session:#x}) on {names[_peer(a)]} owns ephemeral "
                 "/demo/owner; client B watches it")

            victim = names[_peer(a)]
            cluster.kill(victim)
            event(victim, "fault", what="SIGKILL (client A's server)")
            _say(f"SIGKILL {victim}, the server client A is connected to")
            wait_until(lambda: a.state == KazooState.CONNECTED and names[_peer(a)] != victim)
            rearm_b()
            b.sync("/")
            same = a.client_id[0] == session and b.exists("/demo/owner") is not None
            checks.append(("session and ephemeral survive the death of the client's server",
                           same and not events))
            event("client-A", "op", what="ok", op="reconnect", server=names[_peer(a)],
                  session=hex(a.client_id[0]))
            _say(f"client A reconnected to {names[_peer(a)]} with session "
                 f"{a.client_id[0]:#x}; /demo/owner still there; B's watch quiet: "
                 f"{'yes' if same and not events else 'NO'}")
            cluster.restart(victim)

            leader = names[leader_of(addrs)]
            cluster.kill(leader)
            event(leader, "fault", what="SIGKILL (leader)")
            t_kill = time.monotonic()
            _say(f"SIGKILL {leader}, the leader")
            wait_until(lambda: a.set("/demo/counter", b"1") is not None)
            took = time.monotonic() - t_kill
            event("client-A", "op", what="ok", op="set /demo/counter after leader death",
                  after_s=round(took, 3))
            new_leader = names[leader_of([x for x in addrs if names[x] != leader])]
            checks.append(("writes resume after the leader dies", True))
            _say(f"writes resumed {took:.2f}s after the kill; new leader {new_leader}")
            cluster.restart(leader)
            rearm_b()

            a.stop()
            a.close()
            event("client-A", "op", what="ok", op="close session")
            fired.wait(15)
            b.sync("/")
            gone = b.exists("/demo/owner") is None
            checks.append(("the ephemeral goes with its session; the watch fires once",
                           gone and events == [EventType.DELETED]))
            event("client-B", "op", what="ok", op="watch fired", events=[str(e) for e in events])
            _say(f"client A closed its session: /demo/owner gone: {'yes' if gone else 'NO'}; "
                 f"B's watch fired {len(events)} time(s) ({', '.join(map(str, events))})"
                 + (f"; B's own server died {len(notices)} time(s) on the way and B "
                    "re-armed its watch" if notices else ""))
        finally:
            b.stop()
            b.close()
    finally:
        cluster.stop()
    return checks


def run_demo(args: Any) -> int:
    print("== giants demo zookeeper: sessions, ephemerals and watches across failures ==",
          flush=True)
    t0 = time.monotonic()
    logging.getLogger("kazoo.client").setLevel(logging.ERROR)  # its reconnect chatter
    base = getattr(args, "data_dir", None) or tempfile.mkdtemp(prefix="giants-demo-zookeeper-")
    base = os.path.join(base, "zookeeper")  # each demo its own fresh directory
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(".giants/traces", exist_ok=True)
    trace_path = os.path.join(".giants/traces", "demo-zookeeper-real.trace.jsonl")
    with open(trace_path, "w", encoding="utf-8") as f:
        checks = _real_part(TraceWriter(f), base)
    _say(f"trace of the real run: {trace_path}")
    print("-- the same ensemble in the simulator, under partitions and crashes --", flush=True)
    from giants.zookeeper.sim import run_sim_cli

    class SimArgs:
        seed = 1
        nemesis = "partition,crash,isolate,loss"
        ops = 120
        consensus = "raft"

    sim_rc = run_sim_cli(SimArgs())
    try:
        from giants.core.trace_html import render_file

        _say(f"space-time diagram: {render_file('.giants/traces/zookeeper-seed1.trace.jsonl')}")
    except (ImportError, OSError, ValueError) as exc:
        _say(f"(could not render the trace: {exc})")
    for name, ok in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}", flush=True)
    ok = bool(checks) and all(c for _, c in checks) and sim_rc == 0
    print(f"== zookeeper: {'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.1f}s ==",
          flush=True)
    return 0 if ok else 1
