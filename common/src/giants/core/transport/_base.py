"""The transport contract: what every giants transport offers, and its limits.

A transport moves ``Envelope``s between nodes and clients (DESIGN.md, "transport"). Two
roles, one contract for every implementation (``tcp``, ``memory``, and the simulator's
network):

* an **Endpoint** is a node's mailbox and postbox. It serves an address, hands every
  inbound envelope to ``receive()`` through a bounded queue, and ``send()``s envelopes by
  ``target``: to a peer in its address book over an outbound connection (best effort:
  a down or slow peer costs a log line and a dropped message, never a blocked caller),
  else back over the inbound connection on which that target last spoke (how a node
  answers a client), else nowhere (a log line).
* a **Client** makes requests: ``request(address, body, timeout=)`` pipelines many
  concurrent requests over one connection per address and matches replies by
  ``msg_id`` / ``in_reply_to``. ``send()`` is one-way, ``open_stream()`` opens a raw byte
  stream for bulk data. A client's id must not be a node id in the server's address
  book (a node making RPCs uses e.g. ``"n1/rpc"``): replies are routed to peers first.

Errors a Client raises (``giants.core.errors``):

* ``Timeout``         -- no reply before the deadline (the request may have run); also
  when connecting or waiting for a free request slot outlasts it (it did not run);
* ``ConnectionLost``  -- the connection broke with the request in flight, *or* the
  connection could not be made at all. We deliberately use the one indefinite error for
  both, so callers have a single "connection trouble, retry" case; a refused connection
  does mean nothing was sent, and the message says "cannot connect";
* the ``DefiniteError`` or ``RemoteProtocolError`` an ``ErrorReply`` stands for;
* ``LocalProtocolError`` for a body that cannot be encoded (nothing was sent).

Raw stream mode: a connection whose first frame carries a ``StreamOpen`` body leaves frame
mode; the server hands ``(header, stream)`` to its ``stream_handler`` (GFS chunk bytes,
log segments), and closes the stream when the handler returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from giants.core.codec import message
from giants.core.envelope import Envelope

__all__ = [
    "StreamOpen",
    "Endpoint",
    "Client",
    "StreamHandler",
    "Connector",
    "RECEIVE_QUEUE_SIZE",
    "MAX_IN_FLIGHT_PER_CONNECTION",
    "MAX_PENDING_WRITE_BYTES",
    "PEER_QUEUE_FRAMES",
    "CONNECT_TIMEOUT_S",
    "WRITE_TIMEOUT_S",
    "RECONNECT_BACKOFF_MIN_S",
    "RECONNECT_BACKOFF_MAX_S",
    "RECEIVE_CHUNK_BYTES",
    "parse_address",
]

# Inbound envelopes waiting for the node. Big enough to absorb a burst from many clients
# between two host batches; when it is full the readers stop reading, so TCP pushes back
# on the senders instead of this process growing without bound or dropping silently.
RECEIVE_QUEUE_SIZE = 1024

# Requests awaiting a reply on one client connection. Far above what any protocol here
# pipelines, low enough that a stuck server cannot make a client hold unbounded state.
MAX_IN_FLIGHT_PER_CONNECTION = 1024

# Bytes queued for a connection whose socket is not draining. Past this the endpoint
# drops further messages for it (best effort) instead of buffering without bound.
MAX_PENDING_WRITE_BYTES = 64 * 1024 * 1024

# Frames held for a peer while its connection is being (re)established.
PEER_QUEUE_FRAMES = 1024

# Connecting to a peer or server: loopback answers in microseconds, a real LAN in
# milliseconds; 2 s only matters for a host that silently drops packets.
CONNECT_TIMEOUT_S = 2.0

# An endpoint write that cannot finish in this time means the reader on the other end
# is stuck; the connection is closed rather than stalling the node that sends.
WRITE_TIMEOUT_S = 5.0

# After a failed connect to a peer, messages for it are dropped (not retried) for a
# backoff that doubles from MIN to MAX, so a down peer costs little.
RECONNECT_BACKOFF_MIN_S = 0.05
RECONNECT_BACKOFF_MAX_S = 1.0

# One receive_some call: large enough to carry many small frames or a good piece of bulk.
RECEIVE_CHUNK_BYTES = 64 * 1024


@message("core.stream_open")
@dataclass(frozen=True, slots=True)
class StreamOpen:
    """The first (and only) frame of a raw bulk stream; ``header`` says what it is for."""

    header: Any


StreamHandler = Callable[[Any, trio.abc.Stream], Awaitable[None]]
"""``await handler(header, stream)`` serves one raw stream; the server closes it after."""

Connector = Callable[[str], Awaitable[trio.abc.Stream]]
"""Opens a byte stream to an address; raises ``OSError`` if nothing listens there."""


def parse_address(address: str) -> tuple[str, int]:
    """Split ``"host:port"``. Raises ``ValueError`` for anything else."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected 'host:port', got {address!r}")
    return host, int(port)


class Endpoint(Protocol):
    """A node's side of a transport. Every implementation passes the conformance suite
    in ``giants.core.testing.transport_conformance``."""

    @property
    def node_id(self) -> str: ...

    @property
    def address(self) -> str:
        """The address others reach this endpoint at (``"host:port"`` or a name)."""
        ...

    async def receive(self) -> Envelope:
        """The next inbound envelope; waits while there is none."""
        ...

    def receive_nowait(self) -> Envelope:
        """The next inbound envelope. Raises ``trio.WouldBlock`` if none is queued."""
        ...

    def __aiter__(self) -> Endpoint: ...

    async def __anext__(self) -> Envelope: ...

    async def send(self, env: Envelope) -> None:
        """Route ``env`` by ``env.target`` (see the module docstring). Never raises for a
        down or unknown target: it logs and drops. Raises ``LocalProtocolError`` if the
        body cannot be encoded."""
        ...

    async def send_many(self, envs: Sequence[Envelope]) -> None:
        """``send`` each in order; frames for one connection go out in one write."""
        ...

    def set_peers(self, peers: Mapping[str, str]) -> None:
        """Replace the address book (node id -> address). Connections to peers that left
        or moved are closed; new ones are made lazily."""
        ...


class Client(Protocol):
    """The requesting side of a transport."""

    @property
    def client_id(self) -> str: ...

    async def request(self, address: str, body: Any, *, timeout: float) -> Any:
        """Send ``body`` to ``address`` and return the reply body (errors: module doc)."""
        ...

    async def send(self, address: str, body: Any) -> None:
        """One-way send. Raises ``ConnectionLost`` if it could not be handed to the
        connection, ``LocalProtocolError`` if ``body`` cannot be encoded."""
        ...

    def open_stream(
        self, address: str, header: Any
    ) -> AbstractAsyncContextManager[trio.abc.Stream]:
        """A raw byte stream to ``address``'s stream handler, opened with ``header``.
        Raises ``ConnectionLost`` if it cannot connect."""
        ...
