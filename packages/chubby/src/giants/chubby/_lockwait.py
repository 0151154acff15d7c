"""Blocking ``Acquire`` at the Chubby master (Burrows, OSDI 2006, §2.4 "Locks",
§2.5 "conflicting lock request" event, §2.4 lock-delay).

An ``acquire`` that cannot be granted now -- the lock is held in a conflicting mode,
another acquire of it is in the log, or a lock-delay is running -- is *parked* at the
master (volatile; a client re-sends it after a fail-over) and holders subscribed to
``conflict`` are told. Whenever the lock's state may have changed, the first parked
acquire that can now be granted is proposed; applying it decides (a lost race answers
``[False, None]`` and the client library asks again).

A session has at most one acquire parked: its client sends writes one at a time, so a
newer call of the session withdraws an older parked acquire (``_withdraw_parked``), and
an acquire through a handle that already holds the lock is never parked (applying it
answers ``already_held``), so a session cannot wait behind itself.
"""

from __future__ import annotations

import abc
from collections import Counter
from typing import Any

from giants.chubby._cell import MAX_PARKED
from giants.chubby._messages import Call, CallResult
from giants.chubby._namespace import Namespace
from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import Rejected, Unavailable
from giants.core.process import Io

__all__ = ["LockWaiting"]


class LockWaiting(abc.ABC):
    """Mixed into ``ChubbyReplica``; uses its database and master state, and the two
    abstract methods below, which ``ChubbyReplica`` provides."""

    db: Namespace
    acquiring: Counter[str]
    delay_until: dict[str, float]
    parked: dict[str, list[tuple[Envelope, Call]]]
    parked_at: dict[int, str]           # session -> the path its one parked acquire waits on
    newest: dict[int, tuple[int, int, CallResult | ErrorReply | None]]

    @abc.abstractmethod
    def _modify(self, io: Io, env: Envelope | None, command: list[Any], paths: list[str],
                writer: int) -> None:
        ...

    @abc.abstractmethod
    def _queue_event(self, io: Io, sid: int, event: list[Any]) -> int:
        ...

    def _must_wait(self, call: Call, now: float) -> bool:
        h = self.db.handles.get(call.args[0])
        node = self.db.nodes.get(h.path) if h is not None else None
        if h is None or node is None or h.session != call.session:
            return False            # applying it reports the bad handle
        if h.lock:
            return False            # applying refuses it: this handle holds the lock
        if self.acquiring[h.path] or (node.delayed and now < self.delay_until.get(
                h.path, float("inf"))):
            return True
        return bool(node.exclusive) or (call.args[1] == "x" and bool(node.shared))

    def _park(self, io: Io, env: Envelope, call: Call) -> None:
        path = self.db.handles[call.args[0]].path
        queue = self.parked.setdefault(path, [])
        for i, (_e, c) in enumerate(queue):
            if (c.session, c.seq) == (call.session, call.seq):
                queue[i] = (env, call)          # a re-sent copy keeps its place in line
                return
        if len(self.parked_at) >= MAX_PARKED:
            refused = ErrorReply.definite(Unavailable("too many waiting acquires"))
            seq, digest, _ = self.newest[call.session]
            self.newest[call.session] = (seq, digest, refused)
            io.reply(env, refused)
            if not queue:
                self.parked.pop(path)
            return
        queue.append((env, call))
        self.parked_at[call.session] = path
        node = self.db.nodes[path]
        for hid in sorted({node.exclusive, *node.shared} - {0}):
            h = self.db.handles[hid]
            if "conflict" in h.events:
                self._queue_event(io, h.session, ["conflict", path, call.args[1], hid])

    def _withdraw_parked(self, io: Io, call: Call) -> None:
        """``call`` is the newest write of its session: drop the session's parked
        acquire if it is older, or is the same call re-sent as something else (an
        abandoned acquire comes back as ``try_acquire``)."""
        path = self.parked_at.get(call.session)
        if path is None:
            return
        queue = self.parked.get(path, [])
        keep = []
        for env, parked in queue:
            if parked.session == call.session and (
                    parked.seq < call.seq or (parked.seq == call.seq and call.op != "acquire")):
                io.probe("chubby.parked_acquire_withdrawn")
                del self.parked_at[call.session]
                io.reply(env, ErrorReply.definite(Rejected(
                    "acquire withdrawn by the client", reason="withdrawn")))
            else:
                keep.append((env, parked))
        queue[:] = keep
        self._wake(io, path)

    def _wake(self, io: Io, path: str) -> None:
        queue = self.parked.get(path)
        while queue:
            env, call = queue[0]
            if call.session not in self.db.sessions or call.args[0] not in self.db.handles:
                queue.pop(0)
                self.parked_at.pop(call.session, None)
                io.reply(env, ErrorReply.definite(Rejected(
                    "session expired or handle closed while waiting", reason="bad_handle")))
                continue
            if self._must_wait(call, io.now):
                return
            queue.pop(0)
            self.parked_at.pop(call.session, None)
            io.probe("chubby.parked_acquire_woken")
            self._modify(io, env, ["op", call.session, call.seq, call.op, call.args, True],
                         [], call.session)
        self.parked.pop(path, None)

