"""The ``2pc`` plugin: the ``2pc`` system and the ``commit_protocol`` capability.

Hook implementations only; the work is in ``node`` (roles), ``demo`` and ``simrun``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from giants.core.plugins import Registry, Role, System, UpOptions, hookimpl

__all__ = ["giants_register_services", "giants_add_commands", "CommitProtocol"]


@dataclass(frozen=True)
class CommitProtocol:
    """What ``registry.get("commit_protocol", "2pc")`` returns: the sans-I/O cores of
    two-phase commit, to host in a system's own nodes (Spanner: a tablet leader is a
    participant; the coordinator's log may sit on its Paxos/Raft group)."""

    coordinator: Any             # giants.twopc.Coordinator(node_id, durable, shards=, options=)
    replicated_coordinator: Any  # giants.twopc.ReplicatedCoordinator(..., consensus=factory)
    participant: Any             # giants.twopc.Participant(node_id, durable, options)


def _protocol() -> CommitProtocol:
    from giants.twopc import Coordinator, Participant, ReplicatedCoordinator

    return CommitProtocol(Coordinator, ReplicatedCoordinator, Participant)


async def _coordinator_main(config: dict[str, Any]) -> None:
    from giants.twopc.node import serve_coordinator

    await serve_coordinator(config)


async def _participant_main(config: dict[str, Any]) -> None:
    from giants.twopc.node import serve_participant

    await serve_participant(config)


def _plan(opts: UpOptions) -> list[Any]:
    from giants.twopc.node import plan

    return plan(opts)


def _demo(args: Any) -> int:
    from giants.twopc.demo import run_demo

    return run_demo(args)


def _sim(args: Any) -> int:
    from giants.twopc.simrun import run_sim

    return run_sim(args)


@hookimpl
def giants_register_services(registry: Registry) -> None:
    registry.provide("commit_protocol", "2pc", _protocol())
    registry.add_system(System(
        name="2pc",
        summary="two-phase commit over a sharded transactional KV (strict 2PL isolation); "
                "--shards N, --consensus raft for a replicated coordinator",
        roles={
            "coordinator": Role("coordinator", _coordinator_main,
                                "the transaction manager (or one replica of it)"),
            "participant": Role("participant", _participant_main,
                                "one shard of the transactional KV (a resource manager)"),
        },
        plan=_plan,
        capabilities=("commit_protocol:2pc",),
        demo=_demo,
        sim=_sim,
        default_nodes=1,
    ))


@hookimpl
def giants_add_commands(subparsers: argparse._SubParsersAction, registry: Registry) -> None:  # type: ignore[type-arg]
    from giants.twopc.cli import add_commands

    add_commands(subparsers)
