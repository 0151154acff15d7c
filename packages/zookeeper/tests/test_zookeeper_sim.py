"""Seeded simulations of a 3-server ensemble on Raft under every nemesis kind, checked
for ZooKeeper's guarantees (paper section 2.3; checkers in ``giants.zookeeper.sim``):
linearizable writes, FIFO client order, sync+read, watches exactly once per
registration, ephemerals tied to their sessions, identical replicas.
Replay a failing seed with ``--giants-seed N``; ``GIANTS_SEEDS`` scales the sweeps."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from giants.core.solo import solo_factory
from giants.raft import raft_factory
from giants.zookeeper._replies import read
from giants.zookeeper._server import ZooKeeperServer
from giants.zookeeper.sim import run_zk_sim

# Rare branches a full sweep must reach, or it is not testing what it claims.
SWEEP_PROBES = ("zk.early_reply", "zk.retransmit", "zk.frame_out_of_order", "zk.leaderless_drops_clients",
                "zk.session_expired", "zk.session_moved_away", "raft.commit_notice")


@pytest.mark.sim
def test_guarantees_hold_under_every_fault(giants_seeds: Any) -> None:
    seeds = list(giants_seeds(200))
    probes: Counter[str] = Counter()
    for seed in seeds:
        probes.update(run_zk_sim(raft_factory, seed).sim.stats.probes)
    if len(seeds) >= 100:
        never = [p for p in SWEEP_PROBES if not probes[p]]
        assert not never, f"the sweep never reached {never}"


@pytest.mark.sim
def test_sessions_survive_server_crashes(giants_seeds: Any) -> None:
    """Without partitions or message loss every client can always reach a quorum: no
    session expires, though servers crash (the client moves to another server) and the
    leader changes (a new leader grants every session a fresh timeout). Loss is left out
    because the simulated client connection, like TCP without retransmission, stalls on
    a lost frame until the client gives up on it."""
    moved = 0
    for seed in giants_seeds(20, start=1000):
        res = run_zk_sim(raft_factory, seed, nemesis=("crash", "duplicate", "reorder"))
        assert res.expirations == 0, f"seed {seed}: {res.expirations} sessions expired"
        moved += sum(c.conn > 1 for c in res.clients)
    assert moved > 0, "no client ever had to move to another server: the sweep is too tame"


@pytest.mark.parametrize("seed", [359])
def test_regression_seeds(seed: int) -> None:
    """Seeds that once found a bug. 359: a read queued behind an early-answered write
    waited for a *later* write's zxid and so saw the session's own later delete."""
    run_zk_sim(raft_factory, seed)


def test_runs_on_solo_consensus_too() -> None:
    run_zk_sim(solo_factory, 0, nodes=1, nemesis=("loss", "reorder", "duplicate"))


def test_checkers_catch_a_server_that_reads_past_pending_writes(monkeypatch: Any) -> None:
    """Mutation check: a server that answers reads before the connection's earlier
    writes (breaking FIFO client order) is caught by the checkers."""

    def eager_pump(self: ZooKeeperServer, conn: Any) -> None:
        out = []
        for item in list(conn.queue):
            if item.frame is None and item.command is None:
                item.frame = self._execute_local(conn, item)
        while conn.queue and conn.queue[0].frame is not None:
            out.append(conn.queue.popleft().frame)
        rest = [i for i in conn.queue if i.command is None]
        for item in rest:
            out.append(item.frame)
            conn.queue.remove(item)
        if out:
            self._send(conn.key, out)

    monkeypatch.setattr(ZooKeeperServer, "_pump", eager_pump)
    caught = 0
    for seed in range(2):
        try:
            run_zk_sim(raft_factory, seed, nemesis=())
        except AssertionError:
            caught += 1
    assert caught == 2


def test_checkers_catch_stale_sync(monkeypatch: Any) -> None:
    """Mutation check: reads that ignore the local tree's latest state (answered from a
    frozen copy) break sync+read and read-your-writes, and the checkers see it."""
    frozen: dict[int, Any] = {}

    def stale_read(tree: Any, op: int, body: list[Any], auth: Any) -> Any:
        key = id(tree)
        if key not in frozen and tree.last_zxid > 16:  # zxid = log index
            import copy
            frozen[key] = copy.deepcopy(tree)
        return read(frozen.get(key, tree), op, body, auth)

    monkeypatch.setattr("giants.zookeeper._server.read", stale_read)
    with pytest.raises(AssertionError):
        for seed in range(5):
            frozen.clear()
            run_zk_sim(raft_factory, seed, nemesis=())
