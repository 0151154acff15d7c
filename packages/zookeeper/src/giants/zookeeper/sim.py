"""Seeded simulations of an ensemble under a nemesis, and the checkers of ZooKeeper's
guarantees (paper section 2.3) -- what ``giants sim zookeeper`` and the sweeps run.

A run: ``nodes`` servers (``ZooKeeperServer`` over the chosen consensus core) and
``clients`` simulated jute clients (``_simclient``) doing sets, gets with watches,
sync+get, ephemeral creates/deletes, child watches and multis while the nemesis injects
faults; then everything heals, every client registers a watch on ``/final/<name>``
and one client creates those nodes. Checked:

* **linearizable writes**: acknowledged writes are totally ordered by zxid, consistent
  with real time (a write acknowledged before another was invoked has the smaller zxid);
* **FIFO client order**: replies in request order, a client's writes in issue order,
  a read never older than the client's own last write; a ``sync`` makes the next read
  see every write acknowledged before the sync was invoked;
* a read's data is the value written at its ``mzxid``;
* **watches fire exactly once per registration**: no event without a live
  registration, no read observing a change before its watch fired, and every final
  watch fires exactly once;
* **ephemerals vanish only when their session ends**: a client's own ephemeral never
  disappears while its session lives; at the end every live session still owns the
  ephemerals its client created and did not delete, and no ephemeral has a dead owner;
* all servers end with identical trees and session tables (one total order).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from giants.core.consensus import ConsensusConfig, ConsensusFactory
from giants.core.process import Durable, Io
from giants.core.sim import SimNetworkOptions, Simulation
from giants.core.testing.nemesis import ALL_KINDS, Nemesis
from giants.core.trace import TraceWriter
from giants.zookeeper._jute import Op
from giants.zookeeper._server import ServerOptions, ZooKeeperServer
from giants.zookeeper._simclient import Record, SimZkClient, Violations

__all__ = ["SimResult", "run_zk_sim", "check_history", "run_sim_cli"]

SESSION_TIMEOUT_MS = 4000
SIM_TICK_MS = 200
# Host ticks in simulation: coarser than a real server's 10 ms, so a sweep runs fast;
# raft's timeouts are in ticks (election after 15-30 ticks = 0.3-0.6 s here).
SERVER_TICK_S = 0.02
CLIENT_TICK_S = 0.05


@dataclass
class SimResult:
    sim: Simulation
    records: list[Record]
    clients: list[SimZkClient]
    servers: list[str]
    expirations: int


def _server_factory(node: str, peers: dict[str, str], consensus: ConsensusFactory,
                    options: dict[str, Any]) -> Any:
    config = ConsensusConfig(node_id=node, peers=peers, options=options)
    zk_opts = ServerOptions(tick_ms=SIM_TICK_MS, snapshot_every=50)

    def build(durable: Durable) -> ZooKeeperServer:
        return ZooKeeperServer(node, consensus, config, durable, zk_opts)

    return build


def run_zk_sim(consensus: ConsensusFactory, seed: int, *, nodes: int = 3, clients: int = 3,
               ops_per_client: int = 30, nemesis: tuple[str, ...] = ALL_KINDS,
               fault_window_s: float = 4.0, options: dict[str, Any] | None = None,
               trace: TraceWriter | None = None) -> SimResult:
    """Run one seeded simulation and check it; raises ``AssertionError`` naming the
    seed and the violated guarantee."""
    sim = Simulation(seed, SimNetworkOptions(), trace=trace)
    servers = [f"zk-{i}" for i in range(nodes)]
    peers = {s: s for s in servers}
    for s in servers:
        sim.add_process(s, _server_factory(s, peers, consensus, dict(options or {})),
                        tick_s=SERVER_TICK_S)
    records: list[Record] = []
    violations = Violations()
    think_s = fault_window_s / max(1, ops_per_client)
    procs = []
    for i in range(clients):
        c = SimZkClient(f"c{i}", servers, ops=ops_per_client, timeout_ms=SESSION_TIMEOUT_MS,
                        records=records, violations=violations, think_s=think_s)
        procs.append(c)
        sim.add_process(c.name, _fixed(c), tick_s=CLIENT_TICK_S)

    def leader() -> str | None:
        for s in servers:
            p = sim.process(s)
            if isinstance(p, ZooKeeperServer) and p.consensus.leader() == s:
                return s
        return None

    nem = Nemesis(sim, servers, nemesis, leader_fn=leader, max_down=(nodes - 1) // 2)
    nem.start(stop_at=1.0 + fault_window_s)
    sim.run_until(1.0 + fault_window_s + 0.1)
    sim.run_for(60.0, stop=lambda: all(c.ops_left == 0 and c.idle() for c in procs))
    _final_phase(sim, procs, seed)
    sim.run_for(1.0)
    expirations = sum(len(c.expired_sessions) for c in procs)
    res = SimResult(sim, records, procs, servers, expirations)
    problems = violations.items + check_history(res)
    assert not problems, f"seed {seed}: " + "; ".join(problems[:5])
    return res


def _fixed(client: SimZkClient) -> Callable[[Durable], SimZkClient]:
    """Clients never crash in these runs: the factory hands back the same object."""
    return lambda _durable: client


def _register_final(client: SimZkClient) -> Callable[[Any, Io], None]:
    return lambda _process, io: client.register_final(io)


def _final_phase(sim: Simulation, procs: list[SimZkClient], seed: int) -> None:
    for _ in range(15):  # a registration lost to a reconnect is simply made again
        for c in procs:
            if not c.final_registered() and c.idle():
                sim.invoke(c.name, _register_final(c))
        sim.run_for(2.0, stop=lambda: all(c.final_registered() and c.idle() for c in procs))
        if all(c.final_registered() for c in procs):
            break
    assert all(c.final_registered() for c in procs), f"seed {seed}: final watches not registered"
    writer = procs[0]
    sim.invoke(writer.name, lambda _p, io: writer.create_finals(io, [c.name for c in procs]))
    sim.run_for(30.0, stop=lambda: all(c.final_events for c in procs) and writer.idle())


def check_history(res: SimResult) -> list[str]:
    out: list[str] = []
    recs = res.records
    writes = [r for r in recs if r.status == "ok" and r.op in (Op.SET_DATA, Op.CREATE,
                                                                Op.DELETE, Op.MULTI)]
    zxids = [w.zxid for w in writes]
    if len(set(zxids)) != len(zxids):
        out.append("two acknowledged writes share a zxid")
    min_ack = float("inf")
    for w in sorted(writes, key=lambda w: -w.zxid):
        if min_ack < w.invoke_t:
            out.append(f"write {w.client}#{w.xid} (zxid {w.zxid:#x}) ordered after a write "
                       "acknowledged before it was invoked")
            break
        min_ack = min(min_ack, w.ack_t)
    by_value = {w.value: w for w in writes if w.op in (Op.SET_DATA, Op.MULTI)}
    for r in recs:
        if r.status != "ok" or r.op != Op.GET_DATA or r.result is None:
            continue
        data, mzxid = r.result
        src = by_value.get(data)
        if src is not None and src.zxid != mzxid:
            out.append(f"{r.client} read {data!r} with mzxid {mzxid:#x}, written at {src.zxid:#x}")
        if r.after_sync is not None:
            floor = max((x.zxid for x in writes if x.path == r.path and x.ack_t < r.after_sync
                         and x.op in (Op.SET_DATA, Op.MULTI)), default=0)
            if mzxid < floor:
                out.append(f"{r.client}: sync+read of {r.path} at {mzxid:#x} missed a write "
                           f"acknowledged before the sync ({floor:#x})")
    for c in res.clients:
        if c.final_events.count(f"/final/{c.name}") != 1:
            out.append(f"{c.name}: final watch fired {c.final_events.count(f'/final/{c.name}')} "
                       "times, not once")
    out += _check_trees(res)
    return out


def _canonical(tree: Any) -> Any:
    snap = tree.snapshot()
    return sorted(map(repr, snap["nodes"])), sorted(map(repr, snap["sessions"])), \
        snap["next_session"]


def _check_trees(res: SimResult) -> list[str]:
    out: list[str] = []
    trees = []
    for s in res.servers:
        p = res.sim.process(s)
        assert isinstance(p, ZooKeeperServer)
        trees.append(p.tree)
    first = trees[0]
    for s, t in zip(res.servers[1:], trees[1:], strict=True):
        if t.last_zxid == first.last_zxid and _canonical(t) != _canonical(first):
            out.append(f"{s} and {res.servers[0]} differ at zxid {t.last_zxid:#x}")
    newest = max(trees, key=lambda t: t.last_zxid)
    for path, node in newest.nodes.items():
        if node.owner > 0 and node.owner not in newest.sessions:
            out.append(f"ephemeral {path} outlived its session {node.owner:#x}")
    for c in res.clients:
        if c.sid in newest.sessions:
            missing = sorted(p for p in c.ephemerals if p not in newest.nodes)
            if missing:
                out.append(f"{c.name}: live session lost its ephemerals {missing}")
        for sid in c.expired_sessions:
            if sid in newest.sessions:
                out.append(f"{c.name}: session {sid:#x} reported expired but still exists")
    return out


def run_sim_cli(args: Any) -> int:
    """``giants sim zookeeper --seed N --nemesis K --ops K``."""
    from giants.core.plugins import load_registry

    kinds = tuple(k for k in (args.nemesis or ",".join(ALL_KINDS)).split(",")
                  if k and k != "none")
    consensus_name = getattr(args, "consensus", None) or "raft"
    factory = load_registry().consensus(consensus_name)
    os.makedirs(".giants/traces", exist_ok=True)
    path = os.path.join(".giants/traces", f"zookeeper-seed{args.seed}.trace.jsonl")
    trace = TraceWriter()
    ops = int(args.ops or 120)
    try:
        res = run_zk_sim(factory, args.seed, nemesis=kinds, ops_per_client=max(1, ops // 3),
                         trace=trace)
    except AssertionError as exc:
        trace.save(path)
        print(f"FAIL  zookeeper seed={args.seed}: {exc}")
        print(f"trace: {path}   (render: giants trace {path})")
        return 1
    trace.save(path)
    done = sum(1 for r in res.records if r.status == "ok")
    print(f"PASS  zookeeper seed={args.seed} consensus={consensus_name} "
          f"nemesis={','.join(kinds) or 'none'}: {done} requests acknowledged, "
          f"{res.expirations} sessions expired; writes linearizable, FIFO client order, "
          f"watches once, ephemerals tied to sessions ({res.sim.stats.events} events, "
          f"{res.sim.now:.1f}s virtual)")
    print(f"trace: {path}   (render: giants trace {path})")
    return 0
