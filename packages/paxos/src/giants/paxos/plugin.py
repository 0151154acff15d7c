"""The ``paxos`` plugin: the ``paxos`` consensus capability and the ``paxos`` system (the
core's KV state machine replicated by Multi-Paxos). Hook implementations only."""

from __future__ import annotations

from typing import Any

from giants.core.plugins import Registry, Role, System, UpOptions, hookimpl
from giants.paxos._core import paxos_factory

__all__ = ["giants_register_services"]


async def _node_main(config: dict[str, Any]) -> None:
    from giants.paxos.node import serve_node

    await serve_node(config)


def _plan(opts: UpOptions) -> list[Any]:
    from giants.core.rsm_server import plan_replicated

    return plan_replicated("node", opts, default_nodes=3)


def _sim(args: Any) -> int:
    from giants.paxos.scenarios import run_sim

    return int(run_sim(args))


def _demo(args: Any) -> int:
    from giants.paxos.demo import run_demo

    return int(run_demo(args))


@hookimpl
def giants_register_services(registry: Registry) -> None:
    registry.provide("consensus", "paxos", paxos_factory)
    registry.add_system(System(
        name="paxos",
        summary="Multi-Paxos (Paxos Made Simple/Live) replicating the KV state machine; "
                "Basic Paxos duel scenario",
        roles={"node": Role("node", _node_main, "a Multi-Paxos acceptor/learner/proposer "
                                                "hosting the replicated KV map")},
        plan=_plan,
        capabilities=("consensus:paxos",),
        demo=_demo,
        sim=_sim,
        default_nodes=3,
    ))
