"""The server's fast engine: an epoll loop in one worker thread, hosted by trio.

Scaling Memcache at Facebook §6 is about making one memcached server fast. Our
per-request logic (``Session`` + ``Store``) costs a few microseconds, but a standard
client such as pymemcache is strictly request/response, so *every* request costs the
server one event-loop wakeup. trio's scheduler spends 15-25 us of CPU on a wakeup --
several times memcached's whole per-request cost -- so with trio in the data path the
server cannot reach the benchmark goal. This engine runs the same sans-I/O ``Session``
objects from a plain ``select.epoll`` loop in a dedicated thread; trio still owns
the process (startup, cancellation, the role's lifecycle), see ``node.serve_memcached``.

Rules: only the loop thread touches the store (the LRU crawler runs here too, once per
``crawl_interval_s``); ``stop()`` is the one thread-safe method (it wakes the loop through
a socket pair). Replies that do not fit the socket buffer are kept per connection and
sent when it is writable; reading from that connection pauses until they are out, so a
client that never reads cannot make us buffer without limit.
"""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Callable
from typing import Final

from giants.memcache._session import Server, Session

__all__ = ["EpollEngine"]

log = logging.getLogger("giants.memcache.engine")

RECV_BYTES: Final = 256 * 1024
LISTEN_BACKLOG: Final = 1024
_IN: Final = select.EPOLLIN | select.EPOLLRDHUP
_OUT: Final = select.EPOLLOUT


class _Conn:
    __slots__ = ("fd", "pending", "session", "sock", "writing")

    def __init__(self, sock: socket.socket, session: Session) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.session = session
        self.pending = b""
        self.writing = False


class EpollEngine:
    """Serve ``server`` on ``listener`` until ``stop()``. See the module docstring."""

    def __init__(self, server: Server, listener: socket.socket, clock: Callable[[], float],
                 *, max_connections: int, crawl_interval_s: float, crawl_budget: int) -> None:
        self.server = server
        self.listener = listener
        self.clock = clock
        self.max_connections = max_connections
        self.crawl_interval_s = crawl_interval_s
        self.crawl_budget = crawl_budget
        self._ep = select.epoll()
        self._conns: dict[int, _Conn] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = False

    def stop(self) -> None:
        """Ask the loop to exit (thread-safe, idempotent)."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def run(self) -> None:
        """The loop (blocks the calling thread until ``stop``)."""
        ep = self._ep
        self.listener.setblocking(False)
        self._wake_r.setblocking(False)
        listen_fd = self.listener.fileno()
        ep.register(listen_fd, _IN)
        ep.register(self._wake_r.fileno(), _IN)
        conns = self._conns
        next_crawl = self.clock() + self.crawl_interval_s
        try:
            while not self._stopping:
                for fd, events in ep.poll(self.crawl_interval_s):
                    conn = conns.get(fd)
                    if conn is None:
                        if fd == listen_fd:
                            self._accept()
                        continue
                    if events & _OUT:
                        self._flush(conn)
                    else:
                        self._read(conn)
                now = self.clock()
                if now >= next_crawl:
                    self.server.store.crawl(now, self.crawl_budget)
                    next_crawl = now + self.crawl_interval_s
        finally:
            for conn in list(conns.values()):
                self._close(conn)
            ep.close()
            self._wake_r.close()
            self._wake_w.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            server = self.server
            server.total_connections += 1
            if server.curr_connections >= self.max_connections:
                try:
                    sock.send(b"ERROR Too many open connections\r\n")
                finally:
                    sock.close()
                continue
            server.curr_connections += 1
            conn = _Conn(sock, Session(server))
            self._conns[sock.fileno()] = conn
            self._ep.register(sock.fileno(), _IN)

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            if conn.session.parser.in_value():
                log.info("client disconnected mid-value; partial value discarded")
            self._close(conn)
            return
        out = conn.session.feed(data, self.clock())
        if out:
            conn.pending = out
            self._flush(conn)
        elif conn.session.closed:
            self._close(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.pending = conn.pending[sent:]
        if conn.pending:
            if not conn.writing:
                conn.writing = True
                self._ep.modify(conn.fd, _OUT)
            return
        if conn.session.closed:
            self._close(conn)
            return
        if conn.writing:
            conn.writing = False
            self._ep.modify(conn.fd, _IN)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.fd, None) is None:
            return
        try:
            self._ep.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        self.server.curr_connections -= 1
        conn.sock.close()
