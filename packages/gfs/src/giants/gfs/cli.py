"""``giants gfs ...``: the GFS command-line client.

    giants gfs put LOCAL REMOTE      giants gfs get REMOTE LOCAL     giants gfs cat REMOTE
    giants gfs ls [PATH]             giants gfs rm PATH              giants gfs mv SRC DST
    giants gfs append REMOTE TEXT    giants gfs snapshot SRC DST     giants gfs stat PATH
    giants gfs mkdir PATH            giants gfs fsck

Endpoints: ``--endpoints master,shadow,...`` (the master first), else
``$GIANTS_ENDPOINTS``, else the last ``giants up gfs`` in this directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import trio

__all__ = ["add_commands", "resolve_gfs_endpoints", "format_fsck"]

# put/get move files in pieces of this size, so a large file never sits in memory whole.
FILE_PIECE_BYTES = 8 * 1024 * 1024


def resolve_gfs_endpoints(value: str | None) -> list[str]:
    """The master's endpoint first, then the shadows'."""
    from giants.core.cluster import resolve_endpoints
    from giants.core.errors import LocalProtocolError

    if value:
        return resolve_endpoints(value)
    try:
        master = resolve_endpoints(None, "gfs", "master")
    except LocalProtocolError:
        return resolve_endpoints(None)  # $GIANTS_ENDPOINTS
    try:
        shadows = resolve_endpoints(None, "gfs", "shadow")
    except LocalProtocolError:
        shadows = []
    return master + shadows


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("gfs", help="talk to a GFS cluster (giants up gfs)")
    p.add_argument("--endpoints", help="master,shadow,... host:port list")
    p.add_argument("--timeout", type=float, default=10.0)
    sub = p.add_subparsers(dest="gfs_op", required=True)
    for name, params in (("put", ("local", "remote")), ("get", ("remote", "local")),
                         ("cat", ("remote",)), ("rm", ("path",)), ("mv", ("src", "dst")),
                         ("append", ("remote", "text")), ("snapshot", ("src", "dst")),
                         ("stat", ("path",)), ("mkdir", ("path",)), ("fsck", ())):
        sp = sub.add_parser(name)
        for param in params:
            sp.add_argument(param)
    sub.add_parser("ls").add_argument("path", nargs="?", default="/")
    p.set_defaults(func=_command)


def format_fsck(r: Any) -> str:
    lines = [f"files: {r.files}  chunks: {r.chunks}  replication goal: {r.goal}",
             f"under-replicated: {len(r.under_replicated)} {r.under_replicated[:10]}",
             f"missing: {len(r.missing)} {r.missing[:10]}",
             f"corrupt replicas reported: {r.corrupt_reported}  stale replicas removed: "
             f"{r.stale_removed}  clones in flight: {r.clones_in_flight}",
             "chunkservers: " + ", ".join(f"{cs}={n}" for cs, n in sorted(r.chunkservers.items())),
             "verdict: " + ("HEALTHY" if not r.under_replicated and not r.missing
                            else "UNHEALTHY")]
    return "\n".join(lines)


async def _run(args: argparse.Namespace, endpoints: list[str]) -> int:
    from giants.core.errors import GiantsError
    from giants.gfs.client import GFSClient

    async with GFSClient(endpoints, timeout_s=args.timeout) as fs:
        try:
            return await _op(args, fs)
        except (GiantsError, OSError) as exc:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


async def _op(args: argparse.Namespace, fs: Any) -> int:
    op = args.gfs_op
    if op == "put":
        await _put(fs, Path(args.local), args.remote)
    elif op in ("get", "cat"):
        await _get(fs, args.remote, None if op == "cat" else Path(args.local))
    elif op == "ls":
        for info in await fs.list(args.path):
            print(f"{'d' if info.is_dir else '-'} {info.path}")
    elif op == "rm":
        await fs.delete(args.path)
    elif op == "mv":
        await fs.rename(args.src, args.dst)
    elif op == "append":
        await fs.open(args.remote, create=True)
        print(await fs.record_append(args.remote, args.text.encode()))
    elif op == "snapshot":
        await fs.snapshot(args.src, args.dst)
    elif op == "mkdir":
        await fs.mkdir(args.path)
    elif op == "stat":
        info = await fs.stat(args.path)
        kind = "directory" if info.is_dir else "file"
        print(f"{info.path}: {kind}, {info.size} bytes, {info.chunks} chunks")
    else:
        report = await fs.fsck()
        print(format_fsck(report))
        return 0 if not report.under_replicated and not report.missing else 1
    return 0


async def _put(fs: Any, local: Path, remote: str) -> None:
    await fs.create(remote)
    offset = 0
    with open(local, "rb") as f:
        while piece := f.read(FILE_PIECE_BYTES):
            await fs.write(remote, offset, piece)
            offset += len(piece)
    print(f"{remote}: {offset} bytes")


async def _get(fs: Any, remote: str, local: Path | None) -> None:
    size = await fs.size(remote)
    out = open(local, "wb") if local is not None else sys.stdout.buffer
    try:
        for offset in range(0, size, FILE_PIECE_BYTES):
            out.write(await fs.read(remote, offset, FILE_PIECE_BYTES))
    finally:
        if local is not None:
            out.close()
        else:
            out.flush()


def _command(args: argparse.Namespace) -> int:
    return trio.run(_run, args, resolve_gfs_endpoints(args.endpoints))
