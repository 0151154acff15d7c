"""Per-connection state of a server (ZooKeeper paper section 4.2, client-server
interaction): the FIFO queue of a connection's requests, its session and auth ids,
the four-letter admin words and ZooKeeper's digest ids."""

from __future__ import annotations

import base64
import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from giants.zookeeper._server import ZooKeeperServer

__all__ = ["Item", "Conn", "digest_id", "admin_text", "VERSION"]

VERSION = "3.8.0-giants"


@dataclass
class Item:
    """One request waiting in its connection's FIFO queue."""

    xid: int
    op: int
    body: list[Any] | None
    frame: bytes | None = None   # the reply, once known
    command: bytes | None = None  # for writes: what goes to the log
    wseq: int = 0
    sent_at: float = -1.0
    early_zxid: int = 0  # answered from the leader's Applied before the local apply


@dataclass
class Conn:
    key: tuple[str, int]
    owner: str
    state: str = "new"          # new -> connecting -> open
    sid: int = 0
    timeout_ms: int = 0
    auth: list[list[str]] = field(default_factory=list)
    queue: deque[Item] = field(default_factory=deque)
    connect: Item | None = None
    wseq: int = 0
    last_heard: float = 0.0
    watches: set[tuple[str, str]] = field(default_factory=set)
    progress_at: float = 0.0
    min_zxid: int = 0  # reads wait until the tree applied this (an early-answered write
    # already sent, i.e. one ahead of them in the queue)
    rx_next: int = 1
    rx_held: dict[int, bytes] = field(default_factory=dict)


def digest_id(user_password: str) -> str:
    """ZooKeeper's digest id: ``user:base64(sha1("user:password"))``."""
    user = user_password.split(":", 1)[0]
    return f"{user}:{base64.b64encode(hashlib.sha1(user_password.encode()).digest()).decode()}"


def admin_text(server: ZooKeeperServer, word: str) -> str:
    mode = "leader" if server._leading else "follower"
    if word == "ruok":
        text = "imok"
    elif word == "isro":
        text = "rw"
    elif word == "envi":
        text = (f"Environment:\nzookeeper.version={VERSION}, built on 01/01/2026 00:00 GMT\n"
                f"host.name=127.0.0.1\nserver.id={server.node_id}\n")
    elif word in ("srvr", "stat"):
        text = (f"Zookeeper version: {VERSION}\nLatency min/avg/max: 0/0/0\n"
                f"Connections: {len(server.conns)}\nOutstanding: "
                f"{sum(len(c.queue) for c in server.conns.values())}\n"
                f"Zxid: 0x{server.tree.last_zxid:x}\nMode: {mode}\n"
                f"Node count: {len(server.tree.nodes)}\n")
    elif word == "mntr":
        text = (f"zk_version\t{VERSION}\nzk_server_state\t{mode}\n"
                f"zk_znode_count\t{len(server.tree.nodes)}\n"
                f"zk_num_alive_connections\t{len(server.conns)}\n")
    else:
        text = f"tickTime={server.opts.tick_ms}\nserverId={server.node_id}\n"
    return text
