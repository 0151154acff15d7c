"""The trio drivers of the GFS roles: master, shadow master, chunkserver.

Each role is its sans-I/O core hosted by ``giants.core.host.run_process`` on a TCP
endpoint (one port per server, for peers and clients alike) with its ``Durable`` in
SQLite under its data directory. The chunkserver adds the bulk data path (§3.2): a raw
stream handler that receives pushed bytes, forwards them down the chain *while they
arrive* (pipelined: each piece goes on as soon as it is read), puts them in the
``PushBuffer`` and answers one byte once every chunkserver downstream holds them. The
decisions about the data (which mutation uses it, in which order) stay in the core.

A role's config dict (written by the launcher; see ``plugin.plan``)::

    {"node_id": "cs-0", "listen": "127.0.0.1:7002", "peers": {id: "host:port", ...},
     "data_dir": ".giants/gfs/cs-0", "tick_s": 0.05, "trace": false,
     "master": "master", "shadows": ["shadow-0"], "chunk_size": 67108864,
     "replication": 3, "lease_s": 60.0, "heartbeat_s": 1.0, "dead_after_s": 5.0, ...}
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import trio

from giants.core.errors import ConnectionLost
from giants.core.host import run_process
from giants.core.process import Durable, Process
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.trace import TraceWriter
from giants.core.transport import StreamClient, tcp
from giants.gfs._chunkfiles import FileChunkStore
from giants.gfs._chunkserver import ChunkserverConfig, ChunkserverCore
from giants.gfs._chunkstore import PushBuffer
from giants.gfs._master import MasterConfig, MasterCore
from giants.gfs._messages import PushHeader
from giants.gfs._shadow import ShadowConfig, ShadowCore

__all__ = ["serve_master", "serve_shadow", "serve_chunkserver", "master_config",
           "PUSH_PIECE_BYTES"]

log = logging.getLogger("giants.gfs.node")

# Bytes moved per read/forward step of a data push: big enough for few syscalls,
# small enough that the next chunkserver starts forwarding early (pipelining, §3.2).
PUSH_PIECE_BYTES = 256 * 1024
# A push stream that stalls this long is abandoned (the client retries).
PUSH_STALL_S = 10.0
ACK_OK = b"\x01"


def master_config(config: dict[str, Any]) -> MasterConfig:
    return MasterConfig(
        node_id=config["node_id"], shadows=tuple(config.get("shadows", ())),
        chunk_size=int(config.get("chunk_size", 64 * 1024 * 1024)),
        replication=int(config.get("replication", 3)),
        lease_s=float(config.get("lease_s", 60.0)),
        dead_after_s=float(config.get("dead_after_s", 5.0)),
        gc_after_s=float(config.get("gc_after_s", 3 * 24 * 3600.0)),
        gc_scan_s=float(config.get("gc_scan_s", 60.0)),
        checkpoint_every=int(config.get("checkpoint_every", 500)),
        max_clones=int(config.get("max_clones", 8)),
        rebalance_every_s=float(config.get("rebalance_every_s", 30.0)),
    )


@asynccontextmanager
async def _hosting(config: dict[str, Any]) -> AsyncIterator[tuple[SqlDurableStore,
                                                                   TraceWriter | None]]:
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    store = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url)
    trace_file: IO[str] | None = None
    trace = None
    if config.get("trace"):
        trace_file = open(Path(config["data_dir"]) / "trace.jsonl", "a", buffering=1)
        trace = TraceWriter(trace_file)
    try:
        yield store, trace
    finally:
        with trio.CancelScope(shield=True):
            await store.close()
        if trace_file is not None:
            trace_file.close()
        data_dir.unlock()


async def _serve(config: dict[str, Any], factory: Callable[[Durable], Process],
                 stream_handler: Any = None, task_status: Any = trio.TASK_STATUS_IGNORED
                 ) -> None:
    async with _hosting(config) as (store, trace), \
            tcp.serve(config["node_id"], listen=config["listen"], peers=config["peers"],
                      stream_handler=stream_handler) as ep:
        await run_process(factory, node_id=config["node_id"], endpoint=ep, store=store,
                          tick_s=float(config.get("tick_s", 0.05)), trace=trace,
                          task_status=task_status)


async def serve_master(config: dict[str, Any], *,
                       task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    mcfg = master_config(config)
    await _serve(config, lambda d: MasterCore(mcfg, d), task_status=task_status)


async def serve_shadow(config: dict[str, Any], *,
                       task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    scfg = ShadowConfig(
        node_id=config["node_id"], master=config.get("master", "master"),
        chunk_size=int(config.get("chunk_size", 64 * 1024 * 1024)),
        replication=int(config.get("replication", 3)),
        lease_s=float(config.get("lease_s", 60.0)),
        dead_after_s=float(config.get("dead_after_s", 5.0)),
        checkpoint_every=int(config.get("checkpoint_every", 500)))
    await _serve(config, lambda d: ShadowCore(scfg, d), task_status=task_status)


async def serve_chunkserver(config: dict[str, Any], *,
                            task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    node_id = config["node_id"]
    ccfg = ChunkserverConfig(
        node_id=node_id, address=config["listen"],
        masters=(config.get("master", "master"), *config.get("shadows", ())),
        chunk_size=int(config.get("chunk_size", 64 * 1024 * 1024)),
        heartbeat_s=float(config.get("heartbeat_s", 1.0)),
        scan_every_s=float(config.get("scan_every_s", 30.0)))
    chunks = FileChunkStore(Path(config["data_dir"]) / "chunks")
    buffer = PushBuffer()
    async with tcp.Client(f"{node_id}-push") as forwarder:
        async def on_stream(header: Any, stream: trio.abc.Stream) -> None:
            try:
                await receive_push(header, stream, buffer, forwarder)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError,
                    ConnectionLost, OSError) as exc:
                log.warning("%s: data push abandoned: %r", node_id, exc)

        try:
            await _serve(config, lambda d: ChunkserverCore(ccfg, d, chunks, buffer),
                         stream_handler=on_stream, task_status=task_status)
        finally:
            chunks.close()


async def receive_push(header: Any, stream: trio.abc.Stream, buffer: PushBuffer,
                       forwarder: StreamClient) -> None:
    """Serve one pushed-data stream: store it, forward it down the chain as it arrives,
    acknowledge once the whole chain has it. A bad header just closes the stream."""
    if not isinstance(header, PushHeader) or header.length < 0 or \
            header.length > buffer.max_bytes:
        log.warning("refusing a data push with header %r", header)
        return
    if header.chain:
        async with forwarder.open_stream(header.chain[0], PushHeader(
                header.data_id, header.length, header.chain[1:])) as down:
            data = await _relay(stream, header.length, down)
            with trio.fail_after(PUSH_STALL_S):
                ack = await down.receive_some(1)
            if ack != ACK_OK:
                return
    else:
        data = await _relay(stream, header.length, None)
    buffer.put(header.data_id, data)
    await stream.send_all(ACK_OK)


async def _relay(stream: trio.abc.Stream, length: int, down: trio.abc.Stream | None) -> bytes:
    buf = bytearray()
    while len(buf) < length:
        with trio.fail_after(PUSH_STALL_S):
            piece = await stream.receive_some(min(PUSH_PIECE_BYTES, length - len(buf)))
        if not piece:
            raise trio.BrokenResourceError("push stream ended early")
        if down is not None:
            await down.send_all(piece)
        buf += piece
    return bytes(buf)
