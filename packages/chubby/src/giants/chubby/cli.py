"""``giants chubby ls|cat|write|lock|unlock|watch``: a shell over ``ChubbyClient``.

Endpoints come from ``--endpoints host:port,...``, else ``$GIANTS_ENDPOINTS``, else the
last ``giants up chubby``. Every command is one Chubby session. ``lock`` holds the lock
(KeepAlives running) for ``--hold`` seconds, or until interrupted, and prints the
session, handle and sequencer; ``unlock --session S --handle H`` adopts that live session
from another process and releases the lock.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import trio

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("chubby", help="talk to a Chubby cell (ls/cat/write/lock/...)")
    p.add_argument("--endpoints", help="host:port,... (else $GIANTS_ENDPOINTS, else last 'giants up')")
    p.add_argument("--user", default="anonymous")
    sub = p.add_subparsers(dest="chubby_op", required=True)
    sub.add_parser("ls").add_argument("path")
    sub.add_parser("cat").add_argument("path")
    sp = sub.add_parser("write")
    sp.add_argument("path")
    sp.add_argument("data")
    sp.add_argument("--mkdirs", action="store_true", help="create missing parent directories")
    sp = sub.add_parser("lock")
    sp.add_argument("path")
    sp.add_argument("--shared", action="store_true")
    sp.add_argument("--hold", type=float, default=None, help="seconds (default: until ^C)")
    sp = sub.add_parser("unlock")
    sp.add_argument("path")
    sp.add_argument("--session", type=int, required=True)
    sp.add_argument("--handle", type=int, required=True)
    sp.add_argument("--epoch", type=int, default=0)
    sp = sub.add_parser("watch")
    sp.add_argument("path")
    sp.add_argument("--count", type=int, default=1, help="events to wait for")
    p.set_defaults(func=_run)


async def _mkdirs(c: Any, path: str) -> None:
    parts = path.split("/")
    for i in range(4, len(parts)):
        h = await c.open("/".join(parts[:i]), "r", create="dir")
        await c.close(h)


async def _go(args: argparse.Namespace, endpoints: list[str]) -> None:
    from giants.chubby.client import ChubbyClient

    adopt = (args.session, args.epoch) if args.chubby_op == "unlock" else None
    async with ChubbyClient(endpoints, user=args.user, adopt=adopt) as c:
        op, path = args.chubby_op, args.path
        if op == "ls":
            h = await c.open(path)
            print("\n".join(await c.readdir(h)))
        elif op == "cat":
            h = await c.open(path)
            data, _ = await c.read(h)
            print(data.decode("utf-8", "replace"))
        elif op == "write":
            if args.mkdirs:
                await _mkdirs(c, path)
            h = await c.open(path, "w", create="file")
            print(json.dumps(await c.write(h, args.data.encode())))
        elif op == "lock":
            h = await c.open(path, "l", create="file")
            seq = await c.acquire(h, "s" if args.shared else "x")
            print(json.dumps({"session": c.session, "handle": h, "sequencer": seq,
                              "epoch": c.core.epoch}), flush=True)
            if args.hold is None:
                await trio.sleep_forever()
            await trio.sleep(args.hold)
            await c.release(h)
        elif op == "unlock":
            await c.release(args.handle)
            print(f"released {path}")
        else:
            h = await c.open(path, "r", events=("modified", "child", "lock"))
            events = c.events()
            seen = 0
            async for ev in events:
                if ev[0] in ("modified", "child", "lock", "invalid") and ev[1] == path:
                    print(json.dumps(ev), flush=True)
                    seen += 1
                    if seen >= args.count:
                        break
            await c.close(h)


def _run(args: argparse.Namespace) -> int:
    from giants.core.cluster import resolve_endpoints
    from giants.core.errors import GiantsError

    endpoints = resolve_endpoints(args.endpoints, "chubby")
    try:
        trio.run(_go, args, endpoints)
    except GiantsError as exc:
        print(f"error: {type(exc).__name__}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
