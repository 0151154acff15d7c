"""``giants zookeeper ls|get|set|create|delete|stat``: a shell for people without kazoo.

Endpoints come from ``--endpoints host:port,...``, else ``$GIANTS_ENDPOINTS``, else the
last ``giants up zookeeper``.
"""

from __future__ import annotations

import argparse
from typing import Any

import trio

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("zookeeper", help="talk to a ZooKeeper ensemble (ls/get/set/...)")
    p.add_argument("--endpoints", help="host:port,... (else $GIANTS_ENDPOINTS, else last 'giants up')")
    sub = p.add_subparsers(dest="zk_op", required=True)
    sub.add_parser("ls").add_argument("path")
    sub.add_parser("get").add_argument("path")
    sub.add_parser("stat").add_argument("path")
    sp = sub.add_parser("set")
    sp.add_argument("path")
    sp.add_argument("data")
    sp.add_argument("--version", type=int, default=-1)
    sp = sub.add_parser("create")
    sp.add_argument("path")
    sp.add_argument("data", nargs="?", default="")
    sp.add_argument("--sequential", "-s", action="store_true")
    sp = sub.add_parser("delete")
    sp.add_argument("path")
    sp.add_argument("--version", type=int, default=-1)
    p.set_defaults(func=_run)


def _fmt_stat(stat: Any) -> str:
    return "\n".join(f"{k} = {getattr(stat, k)}" for k in stat.__dataclass_fields__)


def _run(args: argparse.Namespace) -> int:
    from giants.core.cluster import resolve_endpoints
    from giants.core.errors import GiantsError
    from giants.zookeeper.client import ZkClient

    endpoints = resolve_endpoints(args.endpoints, "zookeeper")

    async def go() -> str:
        async with ZkClient(endpoints) as zk:
            op, path = args.zk_op, args.path
            if op in ("ls", "get", "stat"):
                await zk.sync(path)  # a shell user expects to see what they just wrote
            if op == "ls":
                kids, _ = await zk.children(path)
                return "[" + ", ".join(kids) + "]"
            if op == "get":
                info, _ = await zk.get(path)
                return info.data.decode("utf-8", "replace")
            if op == "stat":
                stat, _ = await zk.exists(path)
                return _fmt_stat(stat) if stat is not None else f"{path} does not exist"
            if op == "set":
                return _fmt_stat(await zk.set(path, args.data.encode(), args.version))
            if op == "create":
                return "Created " + await zk.create(path, args.data.encode(),
                                                    sequential=args.sequential)
            await zk.delete(path, args.version)
            return f"Deleted {path}"

    try:
        print(trio.run(go))
    except GiantsError as exc:
        print(f"error: {type(exc).__name__}: {exc}")
        return 1
    return 0
