"""Answering clients once a write is applied (ZooKeeper paper section 4.2, client-server
interaction; ordering rules in ``_server``'s docstring): the early reply from the
leader's ``Applied``, the reply after this server's own apply, reads held until the tree
reaches their connection's ``min_zxid``, watch events, and the prompt commit notice a
server asks the leader for (``AwaitCommit``) while a client waits for its apply.
Functions over the ``ZooKeeperServer`` whose state they change, as in ``_sessions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from giants.core.process import Io
from giants.zookeeper._conn import Conn
from giants.zookeeper._jute import Err, watch_event
from giants.zookeeper._messages import Applied, AwaitCommit
from giants.zookeeper._replies import reply, write_body

if TYPE_CHECKING:
    from giants.zookeeper._server import ZooKeeperServer

__all__ = ["on_applied", "complete", "release_behind", "fire", "await_zxid", "ask_commit"]


def on_applied(server: ZooKeeperServer, io: Io, msg: Applied) -> None:
    """The leader applied writes from here: answer each connection without watches at
    once; a connection with watches waits for our own apply (its watch events first)."""
    for owner, wseq, zxid, err, body in msg.results:
        conn = server.by_owner.get(owner)
        if conn is None or zxid <= server.tree.last_zxid:
            continue
        if conn.watches:
            await_zxid(server, zxid)
            continue
        for item in conn.queue:
            if item.wseq == wseq and item.frame is None:
                io.probe("zk.early_reply")
                item.frame = reply(item.xid, zxid, err, bytes(body))
                item.early_zxid = zxid
                conn.progress_at = server.now
                server._pump(conn)
                break


def complete(server: ZooKeeperServer, conn: Conn, wseq: int, result: list[Any],
             zxid: int) -> None:
    """This server applied write ``wseq`` of ``conn``: its reply is known."""
    conn.progress_at = server.now
    for item in conn.queue:
        if item.wseq == wseq and item.frame is None:
            err, resp = result
            item.frame = reply(item.xid, zxid, err, write_body(item.op, resp)
                               if err == Err.OK else b"")
            break
    server._pump(conn)


def release_behind(server: ZooKeeperServer) -> None:
    """Run the reads that waited for the tree to reach their connection's ``min_zxid``
    -- right after the entry that reached it, before the next one, so a read never sees
    a later write of its own session."""
    for key in list(server._behind):
        conn = server.conns.get(key)
        if conn is None or conn.min_zxid <= server.tree.last_zxid:
            server._behind.discard(key)
            if conn is not None:
                server._pump(conn)


def fire(server: ZooKeeperServer, events: list[tuple[int, str]]) -> None:
    """Send the watch events of an applied entry, each registration once."""
    for etype, path in events:
        targets: set[tuple[str, int]] = set()
        if etype != 4:
            targets |= server.data_watches.pop(path, set())
        if etype in (2, 4):
            targets |= server.child_watches.pop(path, set())
        for key in sorted(targets):
            conn = server.conns.get(key)
            if conn is None:
                continue
            conn.watches.discard(("data", path))
            conn.watches.discard(("child", path))
            server._send(key, [watch_event(etype, path)])


def await_zxid(server: ZooKeeperServer, zxid: int) -> None:
    """A client here waits for this server to apply ``zxid``: ask the leader (in
    ``ask_commit``) to have us told the commit index promptly."""
    if server._notify_commit is not None and zxid > server._await_zxid:
        server._await_zxid = zxid


def ask_commit(server: ZooKeeperServer, io: Io) -> None:
    """Send ``AwaitCommit`` for the highest zxid awaited and not yet asked for (or
    applied meanwhile); the leader itself applies at commit and never asks."""
    if server._await_zxid > max(server._await_asked, server.tree.last_zxid):
        to = server.consensus.leader()
        if to is not None and to != server.node_id:
            io.send(to, AwaitCommit(server._await_zxid))
            server._await_asked = server._await_zxid
