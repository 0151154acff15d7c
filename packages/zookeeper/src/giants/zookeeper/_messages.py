"""Messages between a ZooKeeper server core, its jute front-end and its peers.

A client connection is ``(envelope source, conn number)``: the trio front-end of a real
server (``node.py``) is one source holding many TCP connections; each simulated client
is its own source. Frames travel as raw jute bytes, so the core runs the real codec in
the simulator too. Server-to-server messages are the consensus core's own plus
``Forward`` (a follower hands a write to the leader, paper section 4: "write requests
are forwarded to the leader") and ``Touch`` (session liveness for the leader, which
expires sessions), ``Applied`` (the leader tells a write's origin server its outcome) and
``AwaitCommit`` (a server asks the leader to tell it the commit index promptly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from giants.core.codec import message

__all__ = ["ClientFrame", "AdminWord", "Hangup", "ServerFrames", "Forward", "Touch", "Applied",
           "AwaitCommit"]


@message("zk.frame")
@dataclass(frozen=True, slots=True)
class ClientFrame:
    """One jute frame (without its length prefix) a client sent on connection ``conn``;
    ``seq`` counts the connection's frames from 1 (TCP's in-order delivery, which the
    simulator's network does not give by itself)."""

    conn: int
    seq: int
    data: bytes


@message("zk.admin")
@dataclass(frozen=True, slots=True)
class AdminWord:
    """A four-letter admin word (``ruok``, ``envi``...) that opened connection ``conn``."""

    conn: int
    word: str


@message("zk.hangup")
@dataclass(frozen=True, slots=True)
class Hangup:
    """Connection ``conn`` is gone (the client closed it or it broke)."""

    conn: int


@message("zk.out")
@dataclass(frozen=True, slots=True)
class ServerFrames:
    """Bytes for connection ``conn`` (whole jute frames with their length prefixes, or
    an admin answer); ``close``: close the connection after writing them. ``seq``
    counts these messages per connection from 1, as ``ClientFrame.seq`` does."""

    conn: int
    seq: int
    frames: list[bytes]
    close: bool


@message("zk.forward")
@dataclass(frozen=True, slots=True)
class Forward:
    """A follower asks the leader to propose these commands, in this order."""

    commands: list[bytes]


@message("zk.touch")
@dataclass(frozen=True, slots=True)
class Touch:
    """Sessions a server heard from since its last touch (the leader expires sessions)."""

    sessions: list[int]


@message("zk.applied")
@dataclass(frozen=True, slots=True)
class Applied:
    """The leader tells a write's origin server the outcome it applied, so the origin can
    answer a client without watches before it learns the commit itself. Each item:
    ``[owner, wseq, zxid, err, reply_body]``."""

    results: list[list[Any]]


@message("zk.await")
@dataclass(frozen=True, slots=True)
class AwaitCommit:
    """A server waits to apply ``zxid`` itself (a read queued behind a write answered
    early, or the reply to a write from a connection with watches): the leader should
    have the consensus core tell it the commit index as soon as that covers ``zxid``
    (the zxid is the log index) instead of with its next heartbeat."""

    zxid: int
