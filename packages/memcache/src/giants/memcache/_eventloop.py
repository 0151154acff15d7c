"""The server's fast engine: epoll worker threads, hosted by trio.

Scaling Memcache at Facebook §6 is about making one memcached server fast. Our
per-request logic (``Session`` + ``Store``) costs a few microseconds, but a standard
client such as pymemcache is strictly request/response, so *every* request costs the
server one event-loop wakeup. trio's scheduler spends 15-25 us of CPU on a wakeup --
several times memcached's whole per-request cost -- so with trio in the data path the
server cannot reach the benchmark goal. This engine runs the same sans-I/O ``Session``
objects from plain ``select.epoll`` loops; trio still owns the process (startup,
cancellation, the role's lifecycle), see ``node.serve_memcached``.

Like memcached's ``-t``, connections can be spread round-robin over ``threads`` worker
loops, each with its own epoll set. Python runs one thread at a time, but the system
calls (``epoll_wait``, ``recv``, ``send``) release the GIL, so one worker's syscalls
overlap another's parsing; measured on our 2-core machine the GIL hand-offs cost more
than that gains for sets, so the default is one loop.

Rules: every touch of the shared ``Store``/``Server`` (``Session.feed``, the LRU crawler,
connection counters) happens under ``self.lock``; each worker alone owns its
connections; ``stop()`` is the one method other threads call (it wakes every loop
through a socket pair). Replies that do not fit the socket buffer are kept per
connection and sent when it is writable; reading from that connection pauses until they
are out, so a client that never reads cannot make us buffer without limit.
"""

from __future__ import annotations

import itertools
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Final

from giants.memcache._session import Server, Session

__all__ = ["EpollEngine", "DEFAULT_THREADS"]

log = logging.getLogger("giants.memcache.engine")

RECV_BYTES: Final = 256 * 1024
# One loop by default: measured here, more worker threads lost to GIL hand-offs on
# sets (memcached's own default is -t 4; ``--threads`` is there to try it).
DEFAULT_THREADS: Final = 1
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


class _Worker:
    """One epoll loop and the connections it owns."""

    def __init__(self, engine: EpollEngine) -> None:
        self.engine = engine
        self.ep = select.epoll()
        self.conns: dict[int, _Conn] = {}
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.ep.register(self.wake_r.fileno(), _IN)

    def adopt(self, sock: socket.socket) -> None:
        """Take a new connection (called from the accepting worker's thread): known in
        ``conns`` before epoll can report it."""
        conn = _Conn(sock, Session(self.engine.server))
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, _IN)

    def wake(self) -> None:
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    def run(self, listener: socket.socket | None) -> None:
        engine = self.engine
        ep, conns = self.ep, self.conns
        listen_fd = listener.fileno() if listener is not None else -1
        if listener is not None:
            ep.register(listen_fd, _IN)
        next_crawl = engine.clock() + engine.crawl_interval_s
        try:
            while not engine.stopping:
                for fd, events in ep.poll(engine.crawl_interval_s):
                    conn = conns.get(fd)
                    if conn is None:
                        if fd == listen_fd:
                            engine.accept()
                        continue
                    if events & _OUT:
                        self._writable(conn)
                    else:
                        self._read(conn)
                if listener is not None:
                    now = engine.clock()
                    if now >= next_crawl:
                        with engine.lock:
                            engine.server.store.crawl(now, engine.crawl_budget)
                        next_crawl = now + engine.crawl_interval_s
        finally:
            for conn in list(conns.values()):
                self._close(conn)
            ep.close()
            self.wake_r.close()
            self.wake_w.close()

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
        self._serve(conn, data)

    def _serve(self, conn: _Conn, data: bytes) -> None:
        """Feed ``data``; send the replies; while the session has requests left behind
        its reply limit and the socket takes everything, serve those too (a loop, so a
        long pipeline cannot recurse)."""
        engine = self.engine
        while True:
            with engine.lock:
                out = conn.session.feed(data, engine.clock())
            data = b""
            if not out:
                if conn.session.closed:
                    self._close(conn)
                return
            conn.pending = out
            if not self._flush(conn) or not conn.session.backlog():
                return

    def _writable(self, conn: _Conn) -> None:
        if self._flush(conn) and conn.session.backlog():
            self._serve(conn, b"")     # the requests left behind the reply limit

    def _flush(self, conn: _Conn) -> bool:
        """Send what is pending; True if all of it went out and the connection is open."""
        try:
            sent = conn.sock.send(conn.pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(conn)
            return False
        conn.pending = conn.pending[sent:]
        if conn.pending:
            if not conn.writing:
                conn.writing = True
                self.ep.modify(conn.fd, _OUT)
            return False
        if conn.session.closed:
            self._close(conn)
            return False
        if conn.writing:
            conn.writing = False
            self.ep.modify(conn.fd, _IN)
        return True

    def _close(self, conn: _Conn) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        try:
            self.ep.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        with self.engine.lock:
            self.engine.server.curr_connections -= 1
        conn.sock.close()


class EpollEngine:
    """Serve ``server`` on ``listener`` until ``stop()``. See the module docstring."""

    def __init__(self, server: Server, listener: socket.socket, clock: Callable[[], float],
                 *, max_connections: int, crawl_interval_s: float, crawl_budget: int,
                 threads: int = DEFAULT_THREADS) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.server = server
        self.listener = listener
        self.clock = clock
        self.max_connections = max_connections
        self.crawl_interval_s = crawl_interval_s
        self.crawl_budget = crawl_budget
        self.lock = threading.Lock()
        self.stopping = False
        self.workers = [_Worker(self) for _ in range(threads)]
        self._next = itertools.cycle(self.workers)

    def stop(self) -> None:
        """Ask every loop to exit (thread-safe, idempotent)."""
        self.stopping = True
        for w in self.workers:
            w.wake()

    def run(self) -> None:
        """Run worker 0 (which also accepts) in this thread and the others in their own
        threads; returns after ``stop`` once every worker has exited."""
        self.listener.setblocking(False)
        others = [threading.Thread(target=w.run, args=(None,), daemon=True,
                                   name=f"memcache-worker-{i + 1}")
                  for i, w in enumerate(self.workers[1:])]
        for t in others:
            t.start()
        try:
            self.workers[0].run(self.listener)
        finally:
            self.stop()
            for t in others:
                t.join()

    def accept(self) -> None:
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
            with self.lock:
                server.total_connections += 1
                full = server.curr_connections >= self.max_connections
                if not full:
                    server.curr_connections += 1
            if full:
                try:
                    sock.send(b"ERROR Too many open connections\r\n")
                finally:
                    sock.close()
                continue
            next(self._next).adopt(sock)
