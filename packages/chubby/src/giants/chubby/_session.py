"""The Chubby client library's deciding logic, sans-I/O (Burrows, OSDI 2006, §2.8
"Sessions and KeepAlives", §2.9 "Caching", §2.12 "Fail-overs").

``ClientCore`` owns a session: it finds the master (``WhereIsMaster`` to every
replica), creates the session, keeps exactly one ``KeepAlive`` outstanding, keeps the
**local lease** (``send time of the KeepAlive + the lease the reply grants``, which is
never later than the master's, since the master counts from when it received it), and
runs the paper's states:

* ``safe``      -- the local lease is valid; cached data may be used;
* ``jeopardy``  -- the local lease ran out: the cache is emptied, new calls wait, and
  KeepAlives go to whichever replica is master now, for up to ``grace_s``;
* ``expired``   -- the grace period ended (or the master said so): every call fails.

``adopt=(session, epoch)`` takes over a live session another client process created
(the ``giants chubby unlock`` command does this to release a lock held by a session it
knows the id of): the core starts in jeopardy and is safe once a KeepAlive succeeds.

A KeepAlive reply carries events; ``invalidate`` drops a cached path, ``failover`` (a
new master) and ``flush`` drop the whole cache. The next KeepAlive acknowledges them,
which is what lets the master finish a modification. Caching is write-through: a
modification drops the writer's own entry when it is sent and again when it returns,
and a read result is cached only if no invalidation of its path (nor a flush) arrived
while it was in flight, and the master said it was cacheable.

Inputs: ``submit(now, op, args) -> op id``, ``on_reply(now, token, body)`` (``body`` may
be an ``ErrorReply``), ``tick(now)``. Outputs: ``take_outbox()`` -> ``(token, target,
body)`` to send, ``take_completed()`` -> ``(op id, error or None, value)``,
``take_events()`` -> events for the application. The core times requests out itself.

Abandoned calls. Writes go to the master one at a time, in the order of their per-session
sequence numbers, and the master takes a newer number as the end of the older ones. So a
write the cell may still carry out is never dropped: when its caller stops waiting
(``abandon``) or its deadline passes (the caller gets ``Timeout`` then), it stays at the
head of the queue until the cell answers. A blocking ``acquire`` is *withdrawn*: re-sent
as ``try_acquire`` with the same sequence number, which the master answers at once
(refused, or granted if the lock came free, or the acquire's own outcome if it was
already being committed). If the answer shows the cell did something the caller does not
know about -- a lock granted, a handle opened -- the core undoes it (``release``,
``close``) *before* any later request of the session, so a later ``acquire`` never meets
a lock its own session holds unknowingly. Reads and writes never sent are just dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from giants.chubby._master import CACHED_OPS
from giants.chubby._messages import (
    READ_OPS,
    Call,
    CallResult,
    CreateSession,
    KeepAlive,
    KeepAliveReply,
    MasterInfo,
    SessionInfo,
    WhereIsMaster,
)
from giants.core.envelope import ErrorReply
from giants.core.errors import (
    GiantsError,
    NotLeader,
    Rejected,
    Timeout,
    Unavailable,
)

__all__ = ["ClientCore", "ClientOptions"]

# Calls queued in one client library before submit refuses more.
MAX_QUEUED_OPS = 10_000
# A blocking acquire is re-sent after this many request attempts' time.
ACQUIRE_RESEND_ATTEMPTS = 4


@dataclass(frozen=True)
class ClientOptions:
    grace_s: float = 45.0
    attempt_s: float = 0.5        # one request attempt before it is sent again
    op_timeout_s: float = 30.0    # a call gives up (Timeout) after this long
    cache: bool = True
    # A KeepAlive not answered this long before the local lease ends is sent again
    # (it or its reply was lost: the master answers well before the lease ends), and
    # then every third of this until an answer comes.
    resend_before_s: float = 0.5


@dataclass
class Op:
    op_id: int
    op: str
    args: list[Any]
    deadline: float
    seq: int = 0
    path: str = ""
    token: int = 0
    sent_at: float = -1.0
    gens: tuple[int, int] = (0, 0)


@dataclass
class Request:
    body: Any
    target: str
    deadline: float
    op: Op | None = None
    sent_at: float = 0.0


@dataclass
class _Cache:
    entries: dict[tuple[str, str], Any] = field(default_factory=dict)
    path_gen: dict[str, int] = field(default_factory=dict)
    gen: int = 0

    def drop(self, path: str) -> None:
        self.path_gen[path] = self.path_gen.get(path, 0) + 1
        for op in CACHED_OPS:
            self.entries.pop((op, path), None)

    def flush(self) -> None:
        self.gen += 1
        self.entries.clear()


class ClientCore:
    """A Chubby client session. See the module docstring."""

    def __init__(self, replicas: list[str], *, user: str, nonce: str,
                 options: ClientOptions | None = None,
                 adopt: tuple[int, int] | None = None) -> None:
        assert replicas, "a client needs at least one replica address"
        self.replicas = list(replicas)
        self.user = user
        self.nonce = nonce
        self.opts = options or ClientOptions()
        self.state = "connecting"
        self.session = 0
        self.epoch = 0
        self.lease_end = 0.0
        self.grace_end = 0.0
        self.master: str | None = None
        self.addresses: dict[str, str] = {}
        self.last_event = 0
        self.events_epoch = 0       # the epoch whose master numbered last_event
        self.cache = _Cache()
        self.handles: dict[int, str] = {}
        self._seq = 0
        self._tokens = 0
        self._ops = 0
        self._requests: dict[int, Request] = {}
        self._writes: deque[Op] = deque()
        self._reads: list[Op] = []
        self._keepalive = 0
        self._discovering = 0.0
        self._info_epoch = 0
        self._outbox: list[tuple[int, str, Any, float]] = []
        self._completed: list[tuple[int, GiantsError | None, Any]] = []
        self._abandoned: set[int] = set()
        self._events: list[list[Any]] = []
        if adopt is not None:
            self.session, self.epoch = adopt
            self.state = "jeopardy"
            self.grace_end = float("inf")
        self.stats = {"cache_hits": 0, "reads_sent": 0, "keepalives": 0, "jeopardy": 0}

    # -- outputs ----------------------------------------------------------------------

    def take_outbox(self) -> list[tuple[int, str, Any, float]]:
        """``(token, target, body, timeout_s)``: after ``timeout_s`` the core has given
        up on the request by itself (a driver may cancel it then)."""
        out, self._outbox = self._outbox, []
        return out

    def take_completed(self) -> list[tuple[int, GiantsError | None, Any]]:
        out, self._completed = self._completed, []
        return out

    def take_events(self) -> list[list[Any]]:
        out, self._events = self._events, []
        return out

    def queued(self) -> int:
        """Calls not settled yet, abandoned ones included."""
        return len(self._writes) + len(self._reads)

    # -- inputs -----------------------------------------------------------------------

    def start(self, now: float) -> None:
        if self.grace_end == float("inf"):
            self.grace_end = now + self.opts.grace_s
        self._discover(now)

    def submit(self, now: float, op: str, args: list[Any],
               timeout_s: float | None = None) -> int:
        """Queue a call; its outcome comes out of ``take_completed``. It gives up with
        ``Timeout`` after ``timeout_s`` (default ``op_timeout_s``)."""
        self._ops += 1
        o = Op(self._ops, op, list(args),
               now + (self.opts.op_timeout_s if timeout_s is None else timeout_s))
        if self.state == "expired":
            self._complete(o, Rejected("session expired", reason="session_expired"), None)
            return o.op_id
        if len(self._writes) + len(self._reads) >= MAX_QUEUED_OPS:
            self._complete(o, Unavailable("too many calls queued"), None)
            return o.op_id
        o.path = self._path_of(op, args)
        if op in READ_OPS:
            key = (op, o.path)
            if self.opts.cache and op in CACHED_OPS and key in self.cache.entries:
                self.stats["cache_hits"] += 1
                self._complete(o, None, self.cache.entries[key])
                return o.op_id
            self._reads.append(o)
        else:
            self._writes.append(o)
        self._pump(now)
        return o.op_id

    def abandon(self, now: float, op_id: int) -> None:
        """The caller stopped waiting for ``op_id`` (module docstring, "Abandoned
        calls"): drop it if the cell cannot have seen it; else keep it, withdrawn if it
        is a blocking ``acquire``, until the cell says what became of it."""
        for o in [*self._writes, *self._reads]:
            if o.op_id != op_id:
                continue
            if o in self._reads or not o.seq:
                self._drop_op(o)                    # a read, or a write never sent
                self._requests.pop(o.token, None)
            else:
                self._abandoned.add(op_id)
                self._withdraw(o)
            break
        self._pump(now)

    def on_reply(self, now: float, token: int, body: Any) -> None:
        req = self._requests.pop(token, None)
        if req is None:
            return
        if isinstance(body, MasterInfo):
            self._on_master_info(now, body)
        elif isinstance(req.body, CreateSession):
            self._on_session_reply(now, req, body)
        elif isinstance(req.body, KeepAlive):
            self._on_keepalive_reply(now, req, body)
        elif req.op is not None:
            self._on_call_reply(now, req, req.op, body)
        self._pump(now)

    def tick(self, now: float) -> None:
        for o in [*self._writes, *self._reads]:
            if now < o.deadline or o.op_id in self._abandoned:
                continue
            late = Timeout(f"{o.op} not answered in time")
            if o in self._writes and o.seq:
                # the cell may still carry it out: tell the caller now, settle it later
                self._completed.append((o.op_id, late, None))
                self._abandoned.add(o.op_id)
                self._withdraw(o)
            elif not (o.token and o.token in self._requests):
                self._drop_op(o)
                self._complete(o, late, None)
        for token, req in sorted(self._requests.items()):
            if req.deadline <= now:
                del self._requests[token]
                self._on_timeout(now, req)
        if self.state == "safe" and now >= self.lease_end:
            self._enter_jeopardy(now)
        if self.state == "jeopardy" and now >= self.grace_end:
            self._expire("grace period over")
        if self.master is None and now >= self._discovering:
            self._discover(now)
        self._pump(now)

    # -- session and KeepAlives -------------------------------------------------------

    def _send(self, now: float, target: str, body: Any, timeout_s: float,
              op: Op | None = None) -> int:
        self._tokens += 1
        self._requests[self._tokens] = Request(body, target, now + timeout_s, op, now)
        self._outbox.append((self._tokens, target, body, timeout_s))
        return self._tokens

    def _discover(self, now: float) -> None:
        self._discovering = now + self.opts.attempt_s
        for r in self.replicas:
            self._send(now, r, WhereIsMaster(), self.opts.attempt_s)

    def _on_master_info(self, now: float, info: MasterInfo) -> None:
        self.addresses.update(info.replicas)
        if info.master is not None and (self.master is None or info.epoch >= self._info_epoch):
            self._info_epoch = info.epoch
            self.master = self.addresses.get(info.master, info.master)

    def _lost_master(self, now: float, hint: str | None = None) -> None:
        """The master did not answer or said it is not the master: follow ``hint``
        if we know its address, else ask every replica (at most once per attempt
        period; meanwhile requests keep going to the last guess)."""
        if hint is not None and hint in self.addresses:
            self.master = self.addresses[hint]
        elif now >= self._discovering:
            self.master = None
            self._discover(now)

    def _on_session_reply(self, now: float, req: Request, body: Any) -> None:
        if isinstance(body, SessionInfo) and self.state == "connecting":
            self.session, self.epoch = body.session, body.epoch
            self.events_epoch = body.epoch
            self.lease_end = req.sent_at + body.lease_s
            self._become("safe")
        elif isinstance(body, ErrorReply):
            self._lost_master(now)

    def _keepalive_due(self, now: float) -> None:
        if self.state not in ("safe", "jeopardy") or self._keepalive or self.master is None:
            return
        early = self.opts.resend_before_s
        if self.state == "safe" and now < self.lease_end - early:
            timeout = self.lease_end - early - now
        else:
            # late: the master (or a new one) answers at once; keep one always arriving
            timeout = min(early / 3, self.opts.attempt_s)
        self.stats["keepalives"] += 1
        self._keepalive = self._send(now, self.master,
                                     KeepAlive(self.session, self.events_epoch,
                                               self.last_event),
                                     timeout)

    def _on_keepalive_reply(self, now: float, req: Request, body: Any) -> None:
        self._keepalive = 0
        if isinstance(body, ErrorReply):
            exc = body.exception()
            if isinstance(exc, Rejected) and exc.detail.get("reason") == "session_expired":
                self._expire("the master expired the session")
            else:
                self._lost_master(now, exc.hint if isinstance(exc, NotLeader) else None)
            return
        if not isinstance(body, KeepAliveReply) or self.state == "expired":
            return
        self.epoch = max(self.epoch, body.epoch)
        if body.epoch != self.events_epoch:
            # a new master numbers its events afresh (its first is the fail-over event)
            self.events_epoch, self.last_event = body.epoch, 0
        self.lease_end = max(self.lease_end, req.sent_at + body.lease_s)
        for seq, kind, path, detail, hid in body.events:
            if seq <= self.last_event:
                continue
            self.last_event = seq
            if kind == "invalidate":
                self.cache.drop(path)
            elif kind in ("failover", "flush"):
                self.cache.flush()
            if kind not in ("invalidate", "flush"):
                self._events.append([kind, path, detail, hid])
        if self.state == "jeopardy" and now < self.lease_end:
            self._become("safe")

    def _enter_jeopardy(self, now: float) -> None:
        self.stats["jeopardy"] += 1
        self.grace_end = self.lease_end + self.opts.grace_s
        self.cache.flush()
        self._become("jeopardy")
        if self._keepalive:
            self._requests.pop(self._keepalive, None)
            self._keepalive = 0
        self._lost_master(now)

    def _expire(self, why: str) -> None:
        if self.state == "expired":
            return
        self.cache.flush()
        self._become("expired")
        for o in [*self._writes, *self._reads]:
            self._complete(o, Rejected(f"session expired: {why}", reason="session_expired"),
                           None)
        self._writes.clear()
        self._reads.clear()
        self._requests.clear()

    def _become(self, state: str) -> None:
        self.state = state
        self._events.append([state, "", "", 0])

    # -- calls ------------------------------------------------------------------------

    def _pump(self, now: float) -> None:
        if self.state == "connecting" and self.master is not None and not self._requests_of(
                CreateSession):
            self._send(now, self.master, CreateSession(self.user, self.nonce),
                       self.opts.attempt_s)
        self._keepalive_due(now)
        if self.state != "safe" or self.master is None:
            return
        if self._writes and self._writes[0].token not in self._requests:
            self._send_op(now, self._writes[0])
        for o in self._reads:
            if not o.token or o.token not in self._requests:
                self._send_op(now, o)

    def _requests_of(self, kind: type) -> bool:
        return any(isinstance(r.body, kind) for r in self._requests.values())

    def _send_op(self, now: float, o: Op) -> None:
        assert self.master is not None
        if o.op not in READ_OPS:
            if not o.seq:
                self._seq += 1
                o.seq = self._seq
            if o.path:
                self.cache.drop(o.path)
        else:
            self.stats["reads_sent"] += 1
            o.gens = (self.cache.gen, self.cache.path_gen.get(o.path, 0))
        wait = self.opts.attempt_s
        if o.op == "acquire":
            # it waits at the master; sent again now and then (the master keeps one copy)
            # so that a lost message or reply costs a few attempts, not the whole wait
            wait = max(wait, min(o.deadline - now, ACQUIRE_RESEND_ATTEMPTS * wait))
        body = Call(self.session, self.epoch, o.seq, o.op, o.args)
        o.token = self._send(now, self.master, body, wait, o)

    def _on_call_reply(self, now: float, req: Request, o: Op, body: Any) -> None:
        o.token = 0
        if isinstance(body, CallResult):
            self._call_done(o, body)
            return
        exc = body.exception() if isinstance(body, ErrorReply) else None
        if exc is None:
            self._drop_op(o)
            self._complete(o, Rejected(f"unexpected reply {type(body).__name__}"), None)
            return
        reason = getattr(exc, "detail", {}).get("reason")
        if isinstance(exc, NotLeader):
            self._lost_master(now, exc.hint)
        elif isinstance(exc, Unavailable) and reason == "takeover":
            self._lost_master(now)
        elif isinstance(exc, Rejected) and reason == "old_epoch":
            self.epoch = max(self.epoch, int(exc.detail.get("epoch", self.epoch)))
        elif isinstance(exc, Rejected) and reason == "session_expired":
            self._expire("the master expired the session")
        elif (isinstance(exc, Rejected) and reason == "superseded"
              and o.op_id not in self._abandoned):
            # another client wrote through this session (one adopted it): refused
            # without effect; go on after that client's calls
            self._seq = max(self._seq, int(exc.detail.get("newest", self._seq)))
            o.seq = 0
        else:
            self._drop_op(o)
            self._complete(o, exc if isinstance(exc, GiantsError) else Rejected(str(exc)), None)

    def _call_done(self, o: Op, reply: CallResult) -> None:
        value = reply.result
        if (o.op == "acquire" and isinstance(value, list) and value and value[0] is False
                and o.op_id not in self._abandoned):
            o.seq = 0           # lost a race at apply time: ask again as a new call
            return
        self._drop_op(o)
        if o.op == "open" and isinstance(value, list):
            self.handles[value[0]] = o.args[0]
        if o.op == "close":
            self.handles.pop(o.args[0], None)
        if o.op not in READ_OPS and o.path:
            self.cache.drop(o.path)
        if (self.opts.cache and reply.cacheable and o.op in CACHED_OPS
                and self.state == "safe"
                and o.gens == (self.cache.gen, self.cache.path_gen.get(o.path, 0))):
            self.cache.entries[(o.op, o.path)] = value
        self._complete(o, None, value)

    def _on_timeout(self, now: float, req: Request) -> None:
        if isinstance(req.body, KeepAlive):
            self._keepalive = 0
            if self.state == "safe" and now >= self.lease_end:
                self._enter_jeopardy(now)
            elif self.state == "jeopardy":
                self._lost_master(now)
        elif isinstance(req.body, (CreateSession, Call)):
            if req.op is not None:
                req.op.token = 0
            if not (isinstance(req.body, Call) and req.body.op == "acquire"):
                self._lost_master(now)      # (a waiting acquire is no sign of that)

    def _drop_op(self, o: Op) -> None:
        if o in self._writes:
            self._writes.remove(o)
        elif o in self._reads:
            self._reads.remove(o)

    def _withdraw(self, o: Op) -> None:
        """Turn an abandoned blocking ``acquire`` into a ``try_acquire`` with the same
        sequence number: the master drops the parked acquire and answers at once (with
        the acquire's own outcome if it was already being committed)."""
        if o.op != "acquire":
            return
        o.op = "try_acquire"
        if o.token:
            self._requests.pop(o.token, None)       # a late answer to it is ignored
            o.token = 0

    def _complete(self, o: Op, err: GiantsError | None, value: Any) -> None:
        if o.op_id not in self._abandoned:
            self._completed.append((o.op_id, err, value))
            return
        self._abandoned.discard(o.op_id)
        if err is not None:
            return
        undo: tuple[str, list[Any]] | None = None
        if o.op in ("acquire", "try_acquire") and value[0]:
            undo = ("release", [o.args[0]])
        elif o.op == "open":
            undo = ("close", [value[0]])
        if undo is not None:
            # before any later request: the session's next call on this handle must not
            # meet a lock (or handle) it does not know it has
            self._ops += 1
            fix = Op(self._ops, undo[0], undo[1], o.deadline)
            self._abandoned.add(fix.op_id)
            self._writes.appendleft(fix)

    def _path_of(self, op: str, args: list[Any]) -> str:
        if op in ("open", "lookup") and args and isinstance(args[0], str):
            return args[0]
        if args and isinstance(args[0], int) and op not in ("check_sequencer",):
            return self.handles.get(args[0], "")
        return ""

