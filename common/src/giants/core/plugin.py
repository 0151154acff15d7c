"""The core's own plugin: the ``solo`` consensus, the ``kv`` system and ``giants kv``.

``kv`` is the standard example: the KV state machine replicated by a consensus plugin
(``solo``, a single node, here). Raft and Paxos register the same service on their own
consensus under their own names; ``giants kv`` talks to any of them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import trio

from giants.core.plugins import Registry, Role, System, UpOptions, hookimpl
from giants.core.solo import solo_factory

__all__ = ["giants_register_services", "giants_add_commands"]


async def _kv_node_main(config: dict[str, Any]) -> None:
    from giants.core.kv import KVStateMachine
    from giants.core.rsm_server import serve_replicated

    await serve_replicated(config, solo_factory, KVStateMachine)


def _kv_plan(opts: UpOptions) -> list[Any]:
    from giants.core.rsm_server import plan_replicated

    if opts.nodes not in (None, 1):
        raise SystemExit("the core's kv system runs on solo consensus: exactly one node "
                         "(install giants-raft or giants-paxos for more)")
    return plan_replicated("node", UpOptions(1, opts.base_port, opts.data_dir, opts.host,
                                             opts.extra), default_nodes=1)


def _kv_sim(args: Any) -> int:
    from giants.core.kvsim import run_kv_sim

    return run_kv_sim("kv", solo_factory, seed=args.seed, nemesis=args.nemesis or "crash,loss,duplicate,reorder",
                      ops=args.ops, nodes=1, clients=2)


def _kv_demo(args: Any) -> int:
    from giants.core.kvdemo import demo_replicated_kv

    return demo_replicated_kv("kv", nodes=1, sim_factory=solo_factory, args=args)


@hookimpl
def giants_register_services(registry: Registry) -> None:
    registry.provide("consensus", "solo", solo_factory)
    registry.add_system(System(
        name="kv",
        summary="the KV state machine on single-node 'solo' consensus (the core's example)",
        roles={"node": Role("node", _kv_node_main, "a replicated KV node")},
        plan=_kv_plan,
        capabilities=("consensus:solo",),
        demo=_kv_demo,
        sim=_kv_sim,
        default_nodes=1,
    ))


@hookimpl
def giants_add_commands(subparsers: argparse._SubParsersAction, registry: Registry) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("kv", help="talk to a replicated KV service (kv, raft, paxos)")
    p.add_argument("--endpoints", help="host:port,... (else $GIANTS_ENDPOINTS, else last 'giants up')")
    p.add_argument("--timeout", type=float, default=10.0)
    sub = p.add_subparsers(dest="kv_op", required=True)
    for name, params in (("put", ("key", "value")), ("get", ("key",)), ("delete", ("key",)),
                         ("cas", ("key", "expected", "new")), ("leader", ())):
        sp = sub.add_parser(name)
        for param in params:
            sp.add_argument(param)
    p.set_defaults(func=_kv_command)


def _parse_value(text: str) -> Any:
    """Values are JSON when they parse as JSON (numbers, lists, null), else strings."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _kv_command(args: argparse.Namespace) -> int:
    from giants.core.cluster import resolve_endpoints
    from giants.core.errors import GiantsError
    from giants.core.kvclient import KVClient

    endpoints = resolve_endpoints(args.endpoints)

    async def run() -> Any:
        async with KVClient(endpoints, op_timeout_s=args.timeout) as kv:
            if args.kv_op == "put":
                return await kv.put(args.key, _parse_value(args.value))
            if args.kv_op == "get":
                return await kv.get(args.key)
            if args.kv_op == "delete":
                return await kv.delete(args.key)
            if args.kv_op == "cas":
                expected = None if args.expected in ("null", "") else _parse_value(args.expected)
                return await kv.cas(args.key, expected, _parse_value(args.new))
            return await kv.leader()

    try:
        result = trio.run(run)
    except GiantsError as exc:
        print(f"error: {type(exc).__name__}: {exc}")
        return 1
    print(json.dumps(result))
    return 0
