"""giants-memcache's plugin: the ``memcache`` system and ``giants memcache ...``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from giants.core.plugins import Instance, Registry, Role, System, UpOptions, hookimpl

__all__ = ["giants_register_services", "giants_add_commands", "plan_region"]

SERVERS_PER_CLUSTER = 3
CLUSTERS = 2


async def _server_main(config: dict[str, Any]) -> None:
    from giants.memcache.node import server_main

    await server_main(config)


async def _router_main(config: dict[str, Any]) -> None:
    from giants.memcache.router import router_main

    await router_main(config)


async def _db_main(config: dict[str, Any]) -> None:
    from giants.memcache.dbnode import db_main

    await db_main(config)


async def _squeal_main(config: dict[str, Any]) -> None:
    from giants.memcache.squeal import squeal_main

    await squeal_main(config)


def plan_region(opts: UpOptions) -> list[Instance]:
    """A master region: database, then per front-end cluster its servers, its Gutter
    server and its router, then the invalidation daemon. ``extra``: ``clusters`` (2),
    ``servers`` per cluster (3), ``memory`` per server ("64m"), ``replica_region``
    (false; true adds a replica database, one cluster and its own daemon)."""
    extra = opts.extra
    clusters = int(extra.get("clusters", CLUSTERS))
    per = int(opts.nodes or extra.get("servers", SERVERS_PER_CLUSTER))
    memory = str(extra.get("memory", "64m"))
    port = iter(range(opts.base_port, opts.base_port + 10_000))
    out: list[Instance] = []

    def add(role: str, name: str, config: dict[str, Any], listen: bool = True) -> str | None:
        addr = f"{opts.host}:{next(port)}" if listen else None
        cfg = {"name": name, "data_dir": os.path.join(opts.data_dir, name), **config}
        if addr:
            cfg["listen"] = addr
        out.append(Instance(role, name, cfg, addr))
        return addr

    db = add("db", "db", {})
    assert db is not None
    routers = _plan_clusters(add, [f"c{i + 1}" for i in range(clusters)], per, memory)
    add("squeal", "squeal", {"db": db, "targets": routers, "markers": False}, listen=False)
    if str(extra.get("replica_region", "false")).lower() in ("1", "true", "yes"):
        replica = add("db", "db-replica", {"upstream": "db", "upstream_address": db})
        assert replica is not None
        r_routers = _plan_clusters(add, ["r1"], per, memory)
        add("squeal", "squeal-replica", {"db": replica, "targets": r_routers, "markers": True},
            listen=False)
    return out


def _plan_clusters(add: Any, names: list[str], per: int, memory: str) -> dict[str, str]:
    routers = {}
    for cluster in names:
        pool = [add("server", f"{cluster}-mc{i}", {"memory": memory}) for i in range(per)]
        gutter = add("gutter", f"{cluster}-gutter", {"memory": memory})
        routers[cluster] = add("router", f"{cluster}-router",
                               {"pool": pool, "gutter": [gutter], "replicated": {}})
    return routers


def _demo(args: Any) -> int:
    from giants.memcache.demo import run_demo

    return run_demo(args)


def _sim(args: Any) -> int:
    from giants.memcache.demo import run_sim_command

    return run_sim_command(args)


@hookimpl
def giants_register_services(registry: Registry) -> None:
    registry.add_system(System(
        name="memcache",
        summary="memcached scaled as at Facebook: leases, router + gutter, mcsqueal, regions",
        roles={
            "server": Role("server", _server_main, "a memcached-compatible server"),
            "gutter": Role("gutter", _server_main, "a Gutter-pool memcached server"),
            "router": Role("router", _router_main, "an mcrouter-style router for one cluster"),
            "db": Role("db", _db_main, "the database of record (master or replica)"),
            "squeal": Role("squeal", _squeal_main, "the invalidation daemon (mcsqueal)"),
        },
        plan=plan_region,
        demo=_demo,
        sim=_sim,
        default_nodes=SERVERS_PER_CLUSTER,
    ))


@hookimpl
def giants_add_commands(subparsers: argparse._SubParsersAction, registry: Registry) -> None:  # type: ignore[type-arg]
    from giants.memcache.cli import add_memcache_parser

    add_memcache_parser(subparsers)
