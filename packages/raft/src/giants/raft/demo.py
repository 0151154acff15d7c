"""``giants demo raft`` and ``giants sim raft``.

The demo is the core's replicated-KV scenario on real processes (``giants.core.kvdemo``):
3 Raft nodes, clients writing and reading, SIGKILL of the leader, a new leader, the
killed node restarted and caught up, every key read back and the whole history checked
for linearizability; then a simulated run whose trace is written and rendered.

``giants sim raft --seed N --nemesis K --ops K`` runs the seeded KV workload on a
5-node cluster with Raft's safety invariants (``giants.raft.invariants``) checked after
every simulator step, and prints the verdict and the trace path. ``--scenario fig16``
reproduces the paper's Fig. 16 (election downtime against timeout randomness).
"""

from __future__ import annotations

from typing import Any

from giants.core.kvdemo import demo_replicated_kv
from giants.core.kvsim import run_kv_sim
from giants.raft._core import raft_factory
from giants.raft.invariants import RaftInvariants

__all__ = ["run_demo", "run_sim"]


def run_demo(args: Any) -> int:
    return demo_replicated_kv("raft", nodes=3, sim_factory=raft_factory, args=args)


def run_sim(args: Any) -> int:
    scenario = getattr(args, "scenario", None)
    if scenario == "fig16":
        from giants.raft.elections import scenario as fig16

        return fig16(args)
    if scenario is not None:
        print(f"raft has no scenario {scenario!r} (try: fig16)")
        return 2
    nodes = getattr(args, "nodes", None) or 5
    return run_kv_sim("raft", raft_factory, seed=args.seed, nemesis=args.nemesis,
                      ops=args.ops, nodes=nodes,
                      trace_dir=getattr(args, "trace_dir", None) or ".giants/traces",
                      on_cluster=_check_invariants)


def _check_invariants(cluster: Any) -> None:
    RaftInvariants(cluster.sim, cluster.nodes).install()
