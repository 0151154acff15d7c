"""The GFS client as a simulator process: runs ``_clientops`` generators one at a time.

``SimClient`` is a sans-I/O process. Each workload item is ``(name, make_op)`` where
``make_op(state)`` returns an operation generator; the client drives it -- a ``Call``
becomes a message and the reply (or an ``ErrorReply``, or a ``Timeout`` at the
deadline) is fed back, a ``Push`` becomes a ``PushData`` message to the first
chunkserver of the chain, a ``Sleep`` waits on the client's ticks -- and records the
outcome with ``on_result(name, outcome, value)``, pausing about ``think_s`` between operations: ``"ok"`` with the result, ``"fail"``
with a definite error (it did not happen), ``"info"`` with an indefinite one (it may
have happened).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import DefiniteError, GiantsError, IndefiniteError, Timeout
from giants.core.process import Io, Rng
from giants.gfs._clientops import Call, ClientState, Op, Parallel, Push, Sleep
from giants.gfs._messages import PushData

__all__ = ["SimClient", "WorkItem"]

WorkItem = tuple[str, Callable[[ClientState], Op]]
ResultFn = Callable[[str, str, Any], None]


class SimClient:
    def __init__(self, client_id: str, masters: list[str], work: list[WorkItem],
                 on_result: ResultFn, rng: Rng, *, timeout_s: float = 1.0,
                 start_at: float = 0.0, think_s: float = 0.0) -> None:
        self.state = ClientState(client_id, masters, rng, timeout_s=timeout_s)
        self.work = list(work)
        self.on_result = on_result
        self.start_at = start_at
        self.think_s = think_s
        self._gen: Op | None = None
        self._name = ""
        self._wait_msg: int | None = None
        self._deadline = 0.0
        self._wake_at: float | None = None
        self._many: dict[int, int] = {}  # msg id of a Parallel call -> its position
        self._many_results: list[Any] = []
        self.done = False

    def start(self, io: Io) -> None:
        pass

    def tick(self, io: Io) -> None:
        if self._gen is None:
            if io.now >= self.start_at:
                self._next_op(io)
        elif self._wake_at is not None and io.now >= self._wake_at:
            self._wake_at = None
            self._advance(io, None, None)
        elif self._wait_msg is not None and io.now >= self._deadline:
            self._wait_msg = None
            self._advance(io, None, Timeout("no reply before the deadline"))
        elif self._many and io.now >= self._deadline:
            for i in self._many.values():
                self._many_results[i] = Timeout("no reply before the deadline")
            self._many = {}
            self._advance(io, self._many_results, None)

    def receive(self, io: Io, env: Envelope) -> None:
        if self._many and env.in_reply_to in self._many:
            i = self._many.pop(env.in_reply_to)
            body = env.body
            self._many_results[i] = body.exception() if isinstance(body, ErrorReply) else body
            if not self._many:
                self._advance(io, self._many_results, None)
            return
        if self._wait_msg is None or env.in_reply_to != self._wait_msg:
            return
        self._wait_msg = None
        if isinstance(env.body, ErrorReply):
            self._advance(io, None, env.body.exception())
        else:
            self._advance(io, env.body, None)

    def _next_op(self, io: Io) -> None:
        if not self.work:
            self.done = True
            return
        self._name, make = self.work.pop(0)
        self._gen = make(self.state)
        self._advance(io, None, None)

    def _advance(self, io: Io, value: Any, exc: Exception | None) -> None:
        assert self._gen is not None
        try:
            effect = self._gen.throw(exc) if exc is not None else self._gen.send(value)
        except StopIteration as stop:
            self._finish(io, "ok", stop.value)
            return
        except DefiniteError as err:
            self._finish(io, "fail", err)
            return
        except (IndefiniteError, GiantsError) as err:
            self._finish(io, "info", err)
            return
        if isinstance(effect, Parallel):
            self._many = {io.send(c.target, c.body): i for i, c in enumerate(effect.calls)}
            self._many_results = [None] * len(effect.calls)
            self._deadline = io.now + max(c.timeout for c in effect.calls)
        elif isinstance(effect, Call):
            self._wait_msg = io.send(effect.target, effect.body)
            self._deadline = io.now + effect.timeout
        elif isinstance(effect, Push):
            body = PushData(effect.data_id, effect.data, effect.chain[1:])
            self._wait_msg = io.send(effect.chain[0], body)
            self._deadline = io.now + effect.timeout
        else:
            assert isinstance(effect, Sleep)
            self._wake_at = io.now + effect.seconds

    def _finish(self, io: Io, outcome: str, value: Any) -> None:
        self.on_result(self._name, outcome, value)
        self._gen = None
        if self.think_s > 0:
            self.start_at = io.now + self.think_s * (0.5 + self.state.rng.random())
        else:
            self._next_op(io)
