"""The ``raft`` plugin: the ``raft`` consensus capability and the ``raft`` system (the
core's KV state machine replicated by Raft). Hook implementations only."""

from __future__ import annotations

from typing import Any

from giants.core.plugins import Registry, Role, System, UpOptions, hookimpl
from giants.raft._core import raft_factory

__all__ = ["giants_register_services"]


async def _node_main(config: dict[str, Any]) -> None:
    from giants.raft.node import serve_node

    await serve_node(config)


def _plan(opts: UpOptions) -> list[Any]:
    from giants.core.rsm_server import plan_replicated

    return plan_replicated("node", opts, default_nodes=3)


def _sim(args: Any) -> int:
    from giants.raft.demo import run_sim

    return run_sim(args)


def _demo(args: Any) -> int:
    from giants.raft.demo import run_demo

    return run_demo(args)


@hookimpl
def giants_register_services(registry: Registry) -> None:
    registry.provide("consensus", "raft", raft_factory)
    registry.add_system(System(
        name="raft",
        summary="Raft consensus (ATC 2014 + dissertation) replicating the KV state machine",
        roles={"node": Role("node", _node_main, "a Raft server hosting the replicated KV map")},
        plan=_plan,
        capabilities=("consensus:raft",),
        demo=_demo,
        sim=_sim,
        default_nodes=3,
    ))
