"""``giants sim`` for replicated KV services: a seeded workload under a nemesis.

Shared by every system that is the KV state machine on a consensus plugin; prints the
checker's verdict, the fault schedule and where the trace went.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from giants.core.consensus import ConsensusFactory
from giants.core.testing.consensus_conformance import run_kv_workload
from giants.core.testing.nemesis import ALL_KINDS
from giants.core.trace import TraceWriter

__all__ = ["run_kv_sim"]


def run_kv_sim(
    system: str,
    factory: ConsensusFactory,
    *,
    seed: int,
    nemesis: str | None,
    ops: int,
    nodes: int,
    trace_dir: str = ".giants/traces",
    options: dict[str, Any] | None = None,
    clients: int = 4,
    on_cluster: Callable[[Any], None] | None = None,
) -> int:
    kinds = tuple(k for k in (nemesis or ",".join(ALL_KINDS)).split(",") if k and k != "none")
    os.makedirs(trace_dir, exist_ok=True)
    path = os.path.join(trace_dir, f"{system}-seed{seed}.trace.jsonl")
    trace = TraceWriter()
    per_client = max(1, ops // clients)
    try:
        res = run_kv_workload(factory, seed, nodes=nodes, clients=clients,
                              ops_per_client=per_client, nemesis=kinds, options=options,
                              trace=trace, snapshot_every=50, on_cluster=on_cluster)
    except AssertionError as exc:
        trace.save(path)
        print(f"FAIL  {system} seed={seed}: {exc}")
        print(f"trace: {path}   (render: giants trace {path})")
        return 1
    trace.save(path)
    done = sum(c.completed for c in res.clients)
    print(f"PASS  {system} seed={seed} nodes={nodes} nemesis={','.join(kinds) or 'none'}: "
          f"{done} operations completed, history linearizable "
          f"({res.sim.stats.events} events, {res.sim.now:.1f}s virtual)")
    print(f"trace: {path}   (render: giants trace {path})")
    return 0
