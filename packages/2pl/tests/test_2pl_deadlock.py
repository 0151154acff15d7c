"""Every deadlock policy makes progress in a workload built to deadlock.

``n`` transactions each write rows ``r[i]``, ``r[i+1]``, ... in a rotated order, so
every one of them closes a cycle with its neighbours (and two of them also upgrade a
shared lock, the classic conversion deadlock). Transactions that are aborted retry with
their original timestamp (as wait-die and wound-wait require to avoid starvation). The
test asserts that every transaction commits within a bounded number of steps: no
transaction waits forever and the system never stalls.
"""

from __future__ import annotations

import random

import pytest

from giants.core.errors import TxnAborted
from giants.twopl import Aborted, DeadlockPolicy, Granted, LockManager, LockMode


def run_deadlock_workload(policy: str, seed: int, n: int = 6, rows: int = 4,
                          max_steps: int = 20_000) -> dict[str, int]:
    rng = random.Random(seed)
    m = LockManager(policy, wait_timeout_s=0.05 if policy in ("timeout", "detect") else None)
    plans = {}
    for i in range(n):
        order = [f"r{(i + k) % rows}" for k in range(3)]
        steps = [(("t", r), LockMode.X) for r in order]
        if i < 2:
            steps.insert(0, (("t", "shared"), LockMode.S))
            steps.append((("t", "shared"), LockMode.X))
        plans[f"T{i}"] = steps
    ts = {name: float(i) for i, name in enumerate(plans)}
    attempt = dict.fromkeys(plans, 0)
    pos = dict.fromkeys(plans, 0)
    waiting: set[str] = set()
    committed: dict[str, int] = {}
    aborts = 0

    def txn_id(name: str) -> str:
        return f"{name}#{attempt[name]}"

    def restart(name: str) -> None:
        nonlocal aborts
        aborts += 1
        attempt[name] += 1
        pos[name] = 0
        waiting.discard(name)
        m.begin(txn_id(name), ts[name])

    for name in plans:
        m.begin(txn_id(name), ts[name])
    now = 0.0
    for step in range(max_steps):
        now += 0.001
        live = [p for p in plans if p not in committed and p not in waiting]
        if not live and len(committed) == len(plans):
            break
        if live:
            name = rng.choice(live)
            if pos[name] == len(plans[name]):
                m.release_all(txn_id(name))
                committed[name] = step
            else:
                resource, mode = plans[name][pos[name]]
                try:
                    if m.lock(txn_id(name), resource, mode, now=now) == "granted":
                        pos[name] += 1
                    else:
                        waiting.add(name)
                except TxnAborted:
                    restart(name)
        m.tick(now)
        for ev in m.take_events():
            base = ev.txn.split("#")[0]
            if ev.txn != txn_id(base):
                continue
            if isinstance(ev, Granted):
                waiting.discard(base)
                pos[base] += 1
            elif isinstance(ev, Aborted):
                restart(base)
    assert len(committed) == len(plans), (
        f"{policy} seed {seed}: stuck; committed {sorted(committed)}, waiting {sorted(waiting)}, "
        f"graph {m.waits_for()}")
    return {"aborts": aborts, "steps": max(committed.values())}


@pytest.mark.parametrize("policy", [p.value for p in DeadlockPolicy])
def test_every_policy_makes_progress_in_a_deadlocking_workload(policy: str, giants_seeds) -> None:
    total_aborts = 0
    for seed in giants_seeds(30):
        total_aborts += run_deadlock_workload(policy, seed)["aborts"]
    # the workload really deadlocks: every policy had to abort something
    assert total_aborts > 0
