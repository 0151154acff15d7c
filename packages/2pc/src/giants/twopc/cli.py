"""``giants 2pc``: run one transaction or look at a node's state.

::

    giants up 2pc --shards 3
    giants 2pc txn "put alice 90" "put bob 10" "get alice"
    giants 2pc status            # every node: transactions in flight, in doubt, blocked
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import trio

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("2pc", help="transactions on a running 2pc cluster")
    p.add_argument("--coordinators", help="host:port,... (else the last 'giants up 2pc')")
    p.add_argument("--shards", help="host:port,... in shard order")
    sub = p.add_subparsers(dest="twopc_op", required=True)
    t = sub.add_parser("txn", help='one transaction: ops like "get k", "put k v", "del k"')
    t.add_argument("ops", nargs="+")
    sub.add_parser("status", help="each node's transactions in flight / in doubt")
    p.set_defaults(func=_command)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _endpoints(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from giants.core.cluster import parse_endpoints, resolve_endpoints

    coords = (parse_endpoints(args.coordinators) if args.coordinators
              else resolve_endpoints(None, "2pc", "coordinator"))
    shards = (parse_endpoints(args.shards) if args.shards
              else resolve_endpoints(None, "2pc", "participant"))
    return coords, shards


async def _txn(client: Any, ops: list[str]) -> list[Any]:
    out: list[Any] = []
    async with client.transaction() as txn:
        for op in ops:
            words = op.split(maxsplit=2)
            if words[0] == "get" and len(words) == 2:
                out.append({"get": words[1], "value": await txn.get(words[1])})
            elif words[0] == "put" and len(words) == 3:
                await txn.put(words[1], _parse_value(words[2]))
                out.append({"put": words[1]})
            elif words[0] == "del" and len(words) == 2:
                await txn.delete(words[1])
                out.append({"del": words[1]})
            else:
                raise SystemExit(f"bad op {op!r}: use 'get K', 'put K V' or 'del K'")
    return out


def _command(args: argparse.Namespace) -> int:
    from giants.core.errors import GiantsError
    from giants.twopc.client import TxnClient

    coords, shards = _endpoints(args)

    async def run() -> Any:
        async with TxnClient(coords, shards) as client:
            if args.twopc_op == "txn":
                return {"committed": True, "results": await _txn(client, args.ops)}
            out = {}
            for address in coords + shards:
                try:
                    st = await client.status(address)
                    out[st.node] = {"role": st.role, "txns": st.txns, "info": st.info}
                except GiantsError as exc:
                    out[address] = {"error": f"{type(exc).__name__}: {exc}"}
            return out

    try:
        result = trio.run(run)
    except GiantsError as exc:
        print(json.dumps({"committed": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0
