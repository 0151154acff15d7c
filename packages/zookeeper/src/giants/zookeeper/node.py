"""The trio driver of a ZooKeeper server: the jute front-end plus the core's host.

A server has two TCP ports: the **client port** speaks jute (what kazoo connects to),
the **peer port** carries envelopes between ensemble members (consensus messages,
forwarded writes, session touches). ``JuteEndpoint`` merges both into the one
``Endpoint`` that ``giants.core.host.run_process`` hosts the ``ZooKeeperServer`` core
on: every client frame becomes a ``ClientFrame`` envelope from the local source
``<node>.clients``; envelopes the core addresses to that source are written to their
connection. The front-end decides nothing: it splits frames (a frame longer than
``jute.maxbuffer`` closes the connection, as ZooKeeper's "Len error" does) and spots a
four-letter word on a fresh connection.

Delivery: the host registers its receiver (``set_receiver``), and the task that read a
client's bytes hands that read's frames to it directly, as the peer endpoint's reader
tasks do for peer messages -- no queue and no task switch between a socket and the core
(which the host steps at once when idle). Client sockets are ``LeanSocketStream``s: a
read or write that the kernel can serve at once does not yield to the scheduler. Without
a receiver (a host that only reads ``receive``), everything goes through one queue.

Config (written by the launcher, see ``plugin.plan``)::

    {"node_id": "zk-0", "listen": "127.0.0.1:P", "peer_listen": "127.0.0.1:P+100",
     "peers": {"zk-0": "127.0.0.1:P+100", ...}, "data_dir": ..., "tick_s": 0.01,
     "consensus": "raft", "options": {...consensus options...},
     "zk": {"tick_ms": 2000, "snapshot_every": 10000, "max_buffer": 1048575}}
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import trio

from giants.core.consensus import ConsensusConfig
from giants.core.envelope import Envelope
from giants.core.host import DurableStore, run_process
from giants.core.plugins import load_registry
from giants.core.process import Durable
from giants.core.rsm_server import EarlySendStore, PeerBook
from giants.core.storage import DataDir, SqlDurableStore
from giants.core.transport import tcp
from giants.core.transport._base import RECEIVE_CHUNK_BYTES, parse_address
from giants.core.transport.lean import LeanSocketStream
from giants.zookeeper._jute import FOUR_LETTER_WORDS, FrameReader, JuteError
from giants.zookeeper._messages import AdminWord, ClientFrame, Hangup, ServerFrames
from giants.zookeeper._server import ServerOptions, ZooKeeperServer

__all__ = ["JuteEndpoint", "serve_server"]

log = logging.getLogger("giants.zookeeper.node")

# The host's receiver (``set_receiver``): takes one read's envelopes, in arrival order.
Receiver = Callable[[list[Envelope]], Awaitable[None]]

# Inbound envelopes (peer + client) waiting for the core; readers block when it is full.
INBOX_SIZE = 4096
# Outbound writes queued for one client connection; past this the client is not reading
# and its connection is closed.
CONN_OUT_QUEUE = 16_384


class JuteEndpoint:
    """An ``Endpoint`` that is a peer endpoint plus a jute client listener."""

    def __init__(self, peer_ep: Any, max_buffer: int) -> None:
        self.peer_ep = peer_ep
        self.local = f"{peer_ep.node_id}.clients"
        self.max_buffer = max_buffer
        self._in_send, self._in_recv = trio.open_memory_channel[Envelope](INBOX_SIZE)
        self._writers: dict[int, trio.MemorySendChannel[tuple[list[bytes], bool]]] = {}
        self._conn_ids = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._receiver: Receiver | None = None

    @property
    def node_id(self) -> str:
        return str(self.peer_ep.node_id)

    @property
    def address(self) -> str:
        return str(self.peer_ep.address)

    async def receive(self) -> Envelope:
        return await self._in_recv.receive()

    def receive_nowait(self) -> Envelope:
        return self._in_recv.receive_nowait()

    def __aiter__(self) -> JuteEndpoint:
        return self

    async def __anext__(self) -> Envelope:
        return await self.receive()

    async def send(self, env: Envelope) -> None:
        await self.send_many([env])

    async def send_many(self, envs: Sequence[Envelope]) -> None:
        peers = []
        for env in envs:
            if env.target == self.local and isinstance(env.body, ServerFrames):
                self._to_conn(env.body)
            else:
                peers.append(env)
        if peers:
            await self.peer_ep.send_many(peers)

    def set_peers(self, peers: Mapping[str, str]) -> None:
        self.peer_ep.set_peers(peers)

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Hand inbound envelopes (client frames and peer messages) to ``receiver`` from
        the reader tasks from now on; ``None`` goes back to queueing them for
        ``receive``. What was queued before stays queued (``receive_nowait``)."""
        self._receiver = receiver
        set_peer_receiver = getattr(self.peer_ep, "set_receiver", None)
        if set_peer_receiver is not None:
            set_peer_receiver(receiver)

    async def _hand(self, envs: list[Envelope]) -> None:
        receiver = self._receiver
        if receiver is not None:
            await receiver(envs)
            return
        for env in envs:
            await self._in_send.send(env)

    def _to_conn(self, out: ServerFrames) -> None:
        writer = self._writers.get(out.conn)
        if writer is None:
            return
        try:
            writer.send_nowait((out.frames, out.close))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            log.warning("client connection %d is not reading; closing it", out.conn)
            writer.close()

    def _envelope(self, body: Any) -> Envelope:
        return Envelope(self.local, self.node_id, next(self._msg_ids), None, body)

    async def pump_peers(self) -> None:
        """Move what the peer endpoint queued to the host: everything while no receiver
        is set, and afterwards whatever a peer endpoint without ``set_receiver`` (or
        one that queued just before it was set) still holds."""
        async for env in self.peer_ep:
            await self._hand([env])

    async def handle_client(self, socket_stream: trio.SocketStream) -> None:
        stream = LeanSocketStream(socket_stream)
        conn = next(self._conn_ids)
        out_send, out_recv = trio.open_memory_channel[tuple[list[bytes], bool]](CONN_OUT_QUEUE)
        self._writers[conn] = out_send
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_loop, stream, out_recv, nursery.cancel_scope)
                await self._read_loop(stream, conn)
                nursery.cancel_scope.cancel()
        finally:
            self._writers.pop(conn, None)
            with trio.CancelScope(shield=True):
                await self._hand([self._envelope(Hangup(conn))])
                await stream.aclose()

    async def _read_loop(self, stream: LeanSocketStream, conn: int) -> None:
        reader = FrameReader(self.max_buffer)
        seq = itertools.count(1)
        head: bytes | None = b""
        while True:
            try:
                data = await stream.receive_some(RECEIVE_CHUNK_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            if head is not None:
                head += data
                if len(head) < 4:
                    continue
                if head[:4] in FOUR_LETTER_WORDS:
                    await self._hand([self._envelope(AdminWord(conn, head[:4].decode()))])
                    await trio.sleep_forever()
                data, head = head, None
            try:
                frames = reader.feed(data)
            except JuteError as exc:
                log.warning("client connection %d: %s; closing it", conn, exc)
                return
            if frames:
                await self._hand([self._envelope(ClientFrame(conn, next(seq), frame))
                                  for frame in frames])

    async def _write_loop(self, stream: LeanSocketStream,
                          out: trio.MemoryReceiveChannel[tuple[list[bytes], bool]],
                          scope: trio.CancelScope) -> None:
        try:
            async for frames, close in out:
                batch = list(frames)
                while not close:
                    try:
                        more, close = out.receive_nowait()
                    except trio.WouldBlock:
                        break
                    batch.extend(more)
                if batch:
                    await stream.send_all(b"".join(batch))
                if close:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()


async def serve_server(config: dict[str, Any], *,
                       task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve one ZooKeeper server until cancelled."""
    node_id = config["node_id"]
    peers = dict(config["peers"])
    registry = load_registry()
    factory = registry.consensus(config.get("consensus", "raft"))
    zk_opts = ServerOptions.from_dict(dict(config.get("zk", {})))
    data_dir = DataDir(config["data_dir"])
    data_dir.lock()
    # "sync": SQLite's synchronous mode for the log (FULL: fsync every group commit, as
    # ZooKeeper's forceSync=yes; NORMAL: survives a process crash, not a power cut).
    store = SqlDurableStore(config.get("storage_url") or data_dir.sqlite_url,
                            synchronous=str(config.get("sync", "FULL")))
    cconfig = ConsensusConfig(node_id=node_id, peers=peers,
                              options=dict(config.get("options", {})))

    consensus_name = str(config.get("consensus", "raft"))
    early: EarlySendStore | None = None

    def build(durable: Durable) -> Any:
        server = ZooKeeperServer(node_id, factory, cconfig, durable, zk_opts,
                                 wall_offset_s=time.time() - trio.current_time())
        if early is None:
            return server
        # PeerBook reads ``.consensus``/``.node_id`` and forwards start/receive/tick: it
        # wraps this server as it wraps a ReplicatedService.
        early.book = PeerBook(server, early.endpoint, peers)  # type: ignore[arg-type]
        return early.book

    host, port = parse_address(config["listen"])
    try:
        async with tcp.serve(node_id, listen=config["peer_listen"], peers=peers) as peer_ep:
            ep = JuteEndpoint(peer_ep, zk_opts.max_buffer)
            host_store: DurableStore = store
            if consensus_name == "raft":
                # Raft's leader sends AppendEntries while its own log write is under way
                # (dissertation 10.2.1), as giants-raft's own node does.
                from giants.raft.node import is_replication

                early = EarlySendStore(store, ep, is_replication)
                host_store = early
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ep.pump_peers)
                await nursery.start(lambda task_status: run_process(
                    build, node_id=node_id, endpoint=ep, store=host_store,
                    tick_s=float(config.get("tick_s", 0.01)), task_status=task_status))
                listeners = await trio.open_tcp_listeners(port, host=host)
                nursery.start_soon(trio.serve_listeners, ep.handle_client, listeners)
                task_status.started(config["listen"])
    finally:
        with trio.CancelScope(shield=True):
            await store.close()
        data_dir.unlock()

