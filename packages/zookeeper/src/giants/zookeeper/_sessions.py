"""Sessions on the server side (ZooKeeper paper section 2.1 "sessions", section 4.2
timeouts): the outcome of a handshake or reconnect applied from the log, closing and
expiry, the leader's liveness tracking and a leaderless server dropping its clients.
Functions over the ``ZooKeeperServer`` whose state they change (split out of
``_server`` to keep it readable); the ordering rules are in ``_server``'s docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from giants.core.process import Io
from giants.core.stacked import pack
from giants.zookeeper._jute import Err, Op, encode_connect_response
from giants.zookeeper._messages import Touch
from giants.zookeeper._replies import reply

if TYPE_CHECKING:
    from giants.zookeeper._server import ZooKeeperServer

__all__ = ["on_session_result", "on_closed", "sessions_tick", "TOUCH_EVERY_S",
           "EXPIRE_RETRY_S", "LEADERLESS_CLOSE_S"]

# How often a follower tells the leader which sessions it heard from.
TOUCH_EVERY_S = 0.1
# A new expiry proposal for a session is made at most this often.
EXPIRE_RETRY_S = 1.0
# A server that has known no leader for this long drops its client connections, as a
# ZooKeeper follower that lost its leader does, so clients move to a server that can
# reach a quorum (and keep their sessions alive there). Above a normal election.
LEADERLESS_CLOSE_S = 1.0


def on_session_result(server: ZooKeeperServer, io: Io, cmd: list[Any], result: list[Any]) -> None:
    owner = cmd[5]
    if cmd[0] == "at" and result[0] == "ok":
        # The session moved here from another connection: that one is done.
        for other in list(server.conns.values()):
            if other.sid == result[1] and other.owner != owner:
                io.probe("zk.session_moved_away")
                server._send(other.key, [], close=True)
                server._drop_conn(other.key)
    if server._leading and result[0] == "ok":
        server._touched[result[1]] = io.now
    conn = server.by_owner.get(owner)
    if conn is None or conn.state != "connecting":
        return
    conn.connect = None
    if result[0] != "ok":
        io.probe("zk.connect_expired_session")
        server._send(conn.key, [encode_connect_response(0, 0, b"\0" * 16)], close=True)
        server._drop_conn(conn.key)
        return
    _, sid, timeout, passwd = result
    conn.state, conn.sid, conn.timeout_ms = "open", sid, timeout
    server._send(conn.key, [encode_connect_response(timeout, sid, bytes(passwd))])


def on_closed(server: ZooKeeperServer, cmd: list[Any], result: list[Any], zxid: int) -> None:
    sid, owner = cmd[3], cmd[4]
    server._touched.pop(sid, None)
    server._expiring.pop(sid, None)
    for conn in list(server.conns.values()):
        if conn.sid != sid or conn.state != "open":
            continue
        if owner is not None and conn.owner == owner:
            for item in conn.queue:
                if item.op == Op.CLOSE and item.frame is None:
                    item.frame = reply(item.xid, zxid, Err.OK)
            server._pump(conn)
        if result[0] == "ok":
            server._send(conn.key, [], close=True)
            server._drop_conn(conn.key)


def sessions_tick(server: ZooKeeperServer, io: Io) -> None:
    now = io.now
    if server.consensus.leader() is not None:
        server._leaderless_since = None
    elif server._leaderless_since is None:
        server._leaderless_since = now
    elif now - server._leaderless_since > LEADERLESS_CLOSE_S:
        server._leaderless_since = now
        for conn in list(server.conns.values()):
            io.probe("zk.leaderless_drops_clients")
            server._send(conn.key, [], close=True)
            server._drop_conn(conn.key)
    for conn in list(server.conns.values()):
        if conn.state == "open" and now - conn.last_heard > conn.timeout_ms / 1000:
            io.probe("zk.silent_connection_closed")
            server._send(conn.key, [], close=True)
            server._drop_conn(conn.key)
    if not server._leading:
        leader = server.consensus.leader()
        if server._to_touch and leader is not None and now - server._last_touch_sent >= TOUCH_EVERY_S:
            io.send(leader, Touch(sorted(server._to_touch)))
            server._to_touch.clear()
            server._last_touch_sent = now
        return
    expired = []
    for sid, s in server.tree.sessions.items():
        last = server._touched.setdefault(sid, now)
        if now - last > s.timeout_ms / 1000 and now - server._expiring.get(sid, -1e9) > EXPIRE_RETRY_S:
            expired.append(sid)
    for sid in expired:
        io.probe("zk.session_expired")
        io.trace("zk.expire", sid=sid)
        server._expiring[sid] = now
        server._propose(io, [pack(["cl", server.node_id, server._now_ms(io), sid, None])])
