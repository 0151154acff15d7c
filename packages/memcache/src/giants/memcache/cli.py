"""``giants memcache ...``: run one memcache role from the command line.

``giants memcache serve --port P --memory 64m`` starts a memcached-compatible server;
``giants memcache router --port P --pool host:port,...`` an mcrouter-style router (see
``router``). ``python -m giants.memcache ...`` is the same without the core CLI.
"""

from __future__ import annotations

import argparse
from typing import Any

import trio

__all__ = ["add_memcache_parser", "main"]


def add_memcache_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "memcache", help="memcache servers, router, invalidation")
    sub = p.add_subparsers(dest="memcache_cmd", required=True)
    s = sub.add_parser("serve", help="a memcached-compatible server on 127.0.0.1")
    s.add_argument("--port", type=int, default=11211)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--memory", default="64m", help="memory limit (64m, 1g, bare = MB)")
    s.add_argument("--item-size-max", type=int, default=1024 * 1024)
    s.add_argument("--delete-hold", type=float, default=0.0,
                   help="seconds after a delete during which add is refused (warm-up)")
    s.add_argument("--engine", choices=("epoll", "trio"), default="epoll",
                   help="data-path event loop (epoll: fast, default; trio: all-trio)")
    s.add_argument("--threads", "-t", type=int, default=1,
                   help="epoll worker threads (memcached's -t; default 1)")
    s.set_defaults(func=_serve)
    r = sub.add_parser("router", help="an mcrouter-style router on 127.0.0.1")
    r.add_argument("--port", type=int, default=5000)
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--pool", required=True, help="host:port,... of the main pool")
    r.add_argument("--gutter", default="", help="host:port,... of the gutter pool")
    r.add_argument("--replicated-prefix", action="append", default=[],
                   help="PREFIX=host:port,...: keys with PREFIX go to every server listed")
    r.set_defaults(func=_router)
    return p


def _serve(args: argparse.Namespace) -> int:
    from giants.memcache.node import parse_memory, serve_memcached

    memory = parse_memory(args.memory)
    print(f"memcache: serving on {args.host}:{args.port} (memory {memory} bytes)", flush=True)
    trio.run(lambda: serve_memcached(port=args.port, host=args.host, memory_bytes=memory,
                                     item_size_max=args.item_size_max,
                                     delete_hold_s=args.delete_hold, engine=args.engine,
                                     threads=args.threads))
    return 0


def _router(args: argparse.Namespace) -> int:
    from giants.memcache.router import router_main

    replicated = {}
    for spec in args.replicated_prefix:
        prefix, _, servers = spec.partition("=")
        replicated[prefix] = [s for s in servers.split(",") if s]
    config = {"listen": f"{args.host}:{args.port}",
              "pool": [s for s in args.pool.split(",") if s],
              "gutter": [s for s in args.gutter.split(",") if s],
              "replicated": replicated}
    print(f"memcache router: serving on {config['listen']}", flush=True)
    trio.run(router_main, config)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m giants.memcache")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_memcache_parser(sub)
    args = parser.parse_args(["memcache", *(argv if argv is not None else _argv())])
    return int(args.func(args))


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]
