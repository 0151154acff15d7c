"""``giants sim 2pc``: a seeded transaction workload under a nemesis, with the checkers.

Coordinator and shards get the core's ``Nemesis`` (crashes with restarts, partitions,
loss, duplication, reordering, clock skew); clients run random multi-shard
transactions. After the workload every node is healed and restarted, the protocol
settles, and the run is checked: atomic commitment, no committed write lost, nobody
left in doubt (``_simcluster.check_run``), and the committed transactions serializable.
"""

from __future__ import annotations

import os
from typing import Any

from giants.core.testing.nemesis import Nemesis
from giants.core.trace import TraceWriter
from giants.twopc._simcluster import RunVerdict, SimTxnCluster, build_sim, check_run

__all__ = ["run_sim", "run_nemesis", "DEFAULT_KINDS"]

DEFAULT_KINDS = ("crash", "partition", "loss", "duplicate", "reorder", "clog", "skew")


def run_nemesis(seed: int, *, kinds: tuple[str, ...] = DEFAULT_KINDS, txns: int = 6,
                clients: int = 3, shards: int = 3, keys: int = 8,
                consensus: Any = None, deadlock: str = "wound-wait",
                trace: TraceWriter | None = None, fault_window_s: float = 6.0
                ) -> tuple[SimTxnCluster, RunVerdict]:
    from giants.twopc._participant import ParticipantOptions
    from giants.twopc._workload import WorkloadSpec

    spec = WorkloadSpec(keys=[f"k{i}" for i in range(keys)], txns=txns,
                        think_s=(0.0, 2 * fault_window_s / max(1, txns)))
    cluster = build_sim(seed, shards=shards, clients=clients, spec=spec,
                        consensus=consensus, trace=trace,
                        participant=ParticipantOptions(deadlock=deadlock))
    servers = cluster.coordinators + cluster.shards
    max_down = 1 if consensus is not None else len(servers)
    Nemesis(cluster.sim, servers, kinds, max_down=max_down).start(fault_window_s)
    cluster.run(120.0)
    return cluster, check_run(cluster)


def run_sim(args: Any) -> int:
    seed = int(getattr(args, "seed", 0))
    nemesis = getattr(args, "nemesis", None)
    kinds = DEFAULT_KINDS if not nemesis else tuple(
        k for k in nemesis.split(",") if k and k != "none")
    ops = int(getattr(args, "ops", 60) or 60)
    trace_dir = getattr(args, "trace_dir", ".giants/traces")
    os.makedirs(trace_dir, exist_ok=True)
    path = os.path.join(trace_dir, f"2pc-seed{seed}.trace.jsonl")
    trace = TraceWriter()
    clients = 3
    cluster, verdict = run_nemesis(seed, kinds=kinds, txns=max(1, ops // (3 * clients)),
                                   clients=clients, trace=trace)
    trace.save(path)
    print(f"2pc seed={seed} nemesis={','.join(kinds) or 'none'}: {verdict}")
    print(f"({cluster.sim.stats.events} events, {cluster.sim.now:.1f}s virtual)")
    print(f"trace: {path}   (render: giants trace {path})")
    return 0 if verdict.ok else 1
