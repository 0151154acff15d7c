"""The trio driver: each 2PC role as a real server, and the cluster plan.

Thin on purpose: a role's config dict names its core; ``run_process`` (giants.core.host)
hosts it on a TCP endpoint and a ``SqlDurableStore`` in its data directory, persisting
every call's writes before that call's messages leave -- which is exactly 2PC's "force
the PREPARED / COMMIT record before sending the vote / decision".

A config (written by ``plan``, read by ``giants run``)::

    {"node_id": "shard-0", "listen": "127.0.0.1:7001",
     "peers": {"coord-0": "127.0.0.1:7000", "shard-0": ..., ...},   # every node
     "data_dir": ..., "tick_s": 0.01, "shards": ["shard-0", ...],
     "coordinators": ["coord-0"], "consensus": null | "raft" | "paxos",
     "options": {...}, "consensus_options": {...}, "trace_path": null}

One TCP port per node serves peers and clients alike (envelopes, told apart by type).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import trio

from giants.core.host import run_process
from giants.core.plugins import Instance, UpOptions, load_registry
from giants.core.process import Durable, Process
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.trace import TraceWriter
from giants.core.transport import tcp
from giants.twopc._coordinator import Coordinator, CoordinatorOptions
from giants.twopc._participant import Participant, ParticipantOptions
from giants.twopc._replicated import ReplicatedCoordinator
from giants.twopc._sharding import coordinator_names, shard_names

__all__ = ["serve_coordinator", "serve_participant", "plan", "DEFAULT_SHARDS"]

DEFAULT_SHARDS = 3
# Tighter than the sim defaults would be pointless: real timers are 10 ms ticks.
DEFAULT_TICK_S = 0.01


class WallClockTrace(TraceWriter):
    """A trace whose times are wall-clock seconds, not the host's trio clock (each
    process's trio clock has its own origin): the demo merges the nodes' traces into one
    space-time diagram, which needs one time base across processes."""

    def event(self, t: float, node: str, kind: str, **fields: Any) -> None:
        super().event(time.time(), node, kind, **fields)


def coordinator_factory(config: dict[str, Any]) -> Callable[[Durable], Process]:
    node_id = config["node_id"]
    options = CoordinatorOptions.from_dict(dict(config.get("options", {})))
    shards = list(config["shards"])
    name = config.get("consensus")
    if not name:
        return lambda d: Coordinator(node_id, d, shards=shards, options=options)
    consensus = load_registry().consensus(name)
    peers = {c: config["peers"][c] for c in config["coordinators"]}
    return lambda d: ReplicatedCoordinator(
        node_id, d, peers=peers, consensus=consensus, shards=shards, options=options,
        consensus_options=dict(config.get("consensus_options", {})))


def participant_factory(config: dict[str, Any]) -> Callable[[Durable], Process]:
    options = ParticipantOptions.from_dict(dict(config.get("options", {})))
    return lambda d: Participant(config["node_id"], d, options)


async def _serve(config: dict[str, Any], factory: Callable[[Durable], Process],
                 task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    node_id = config["node_id"]
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    store = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url)
    with ExitStack() as stack:
        trace = None
        if config.get("trace_path"):
            trace = WallClockTrace(stack.enter_context(open(config["trace_path"], "a",
                                                            encoding="utf-8", buffering=1)))
        try:
            async with tcp.serve(node_id, listen=config["listen"],
                                 peers=dict(config["peers"])) as ep:
                await run_process(factory, node_id=node_id, endpoint=ep, store=store,
                                  tick_s=float(config.get("tick_s", DEFAULT_TICK_S)),
                                  trace=trace, task_status=task_status)
        finally:
            with trio.CancelScope(shield=True):
                await store.close()
            data_dir.unlock()


async def serve_coordinator(config: dict[str, Any],
                            task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve a coordinator (plain, or a replica when ``config["consensus"]`` is set)."""
    await _serve(config, coordinator_factory(config), task_status)


async def serve_participant(config: dict[str, Any],
                            task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve one shard of the transactional KV."""
    await _serve(config, participant_factory(config), task_status)


def plan(opts: UpOptions) -> list[Instance]:
    """Coordinator(s) then shards, on consecutive ports from ``opts.base_port``.

    ``opts.extra``: ``shards`` (default 3), ``consensus`` (a consensus plugin name: run
    ``opts.nodes`` (default 3) coordinator replicas on it), ``deadlock`` (the shards'
    policy), ``tick_s``, ``trace_dir`` (each node appends its trace there)."""
    extra = opts.extra
    n_shards = int(extra.get("shards", DEFAULT_SHARDS))
    if n_shards < 1:
        raise SystemExit("--shards must be at least 1")
    consensus = extra.get("consensus") or None
    n_coord = (opts.nodes or 3) if consensus else 1
    coords, shards = coordinator_names(n_coord), shard_names(n_shards)
    names = coords + shards
    addrs = {n: f"{opts.host}:{opts.base_port + i}" for i, n in enumerate(names)}
    participant_options = dict(extra.get("participant_options", {}))
    if "deadlock" in extra:
        participant_options["deadlock"] = str(extra["deadlock"])
    participant_options.setdefault("detector", coords)
    out = []
    for name in names:
        is_coord = name in coords
        config = {
            "node_id": name, "listen": addrs[name], "peers": addrs,
            "data_dir": os.path.join(opts.data_dir, name),
            "tick_s": float(extra.get("tick_s", DEFAULT_TICK_S)),
            "shards": shards, "coordinators": coords, "consensus": consensus,
            "options": dict(extra.get("coordinator_options", {})) if is_coord
            else participant_options,
            "consensus_options": dict(extra.get("consensus_options", {})),
            "storage_url": extra.get("storage_url"),
            "trace_path": (os.path.join(str(extra["trace_dir"]), f"{name}.trace.jsonl")
                           if extra.get("trace_dir") else None),
        }
        out.append(Instance("coordinator" if is_coord else "participant", name, config,
                            addrs[name]))
    return out
