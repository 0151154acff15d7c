"""The ``chubby`` plugin: the ``chubby`` system (a cell of replicas), the
``lock_service`` capability named ``chubby``, and the ``giants chubby`` commands.
Hook implementations only.

``giants up chubby [--nodes 5] [--base-port P] [--set consensus=paxos]``: replica ``i``
serves peers and clients on ``P + i``. Cell options (``lease_s``, ``keepalive_margin_s``,
``lock_delay_s``, ``cell``) and ``consensus`` come from the spec/extra options.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from giants.core.plugins import Instance, Registry, Role, System, UpOptions, hookimpl

__all__ = ["giants_register_services", "giants_add_commands", "plan"]

CELL_KEYS = ("cell", "lease_s", "keepalive_margin_s", "lock_delay_s", "snapshot_every")


async def _replica_main(config: dict[str, Any]) -> None:
    from giants.chubby.node import serve_replica

    await serve_replica(config)


def plan(opts: UpOptions) -> list[Instance]:
    n = opts.nodes or 5
    names = [f"chubby-{i}" for i in range(n)]
    addrs = {name: f"{opts.host}:{opts.base_port + i}" for i, name in enumerate(names)}
    out = []
    for name in names:
        config = {
            "node_id": name,
            "listen": addrs[name],
            "peers": addrs,
            "data_dir": os.path.join(opts.data_dir, name),
            "tick_s": float(opts.extra.get("tick_s", 0.01)),
            "consensus": str(opts.extra.get("consensus", "raft")),
            "options": dict(opts.extra.get("options", {})),
            "cell": {k: opts.extra[k] for k in CELL_KEYS if k in opts.extra},
            "storage_url": opts.extra.get("storage_url"),
        }
        out.append(Instance(role="replica", name=name, config=config, endpoint=addrs[name]))
    return out


def _sim(args: Any) -> int:
    from giants.chubby.sim import run_sim_cli

    return int(run_sim_cli(args))


def _demo(args: Any) -> int:
    from giants.chubby.demo import run_demo

    return int(run_demo(args))


def _lock_service(endpoints: str | list[str], **options: Any) -> Any:
    """``factory(endpoints, **options)`` -> ``async with`` -> ``LockService``."""
    from giants.chubby.lockservice import connect

    return connect(endpoints, **options)


@hookimpl
def giants_register_services(registry: Registry) -> None:
    registry.provide("lock_service", "chubby", _lock_service)
    registry.add_system(System(
        name="chubby",
        summary="Chubby lock service: a cell of replicas on a consensus plugin (raft/paxos)",
        roles={"replica": Role("replica", _replica_main, "a Chubby cell replica")},
        plan=plan,
        capabilities=("lock_service:chubby",),
        demo=_demo,
        sim=_sim,
        default_nodes=5,
    ))


@hookimpl
def giants_add_commands(subparsers: argparse._SubParsersAction, registry: Registry) -> None:  # type: ignore[type-arg]
    from giants.chubby.cli import add_commands

    add_commands(subparsers)
