"""A closed-loop KV client as a sans-I/O process, for simulations.

Each ``KVWorkloadClient`` issues ``ops`` operations one at a time against a
``ReplicatedService`` running ``KVStateMachine`` and records them in a Jepsen-style
``History``: ``invoke`` when an operation starts, ``ok`` with its result, ``fail`` when
it certainly did not happen (a definite error), ``info`` when it may have happened (the
retry budget ran out). Commands carry a client session ``(client_id, seq)`` and are
retried with the same ``seq``, so a retry is applied at most once. ``NotLeader`` sends the
retry to the hinted leader. After an ``info`` the history process is retired and a new
one takes over (Jepsen's rule), the session continuing with a higher ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from giants.core.envelope import Envelope, ErrorReply
from giants.core.errors import NotLeader
from giants.core.process import Io
from giants.core.rsm import ClientCommand, ClientQuery, CommandResult, QueryResult

__all__ = ["KVWorkloadClient", "WorkloadMix"]


@dataclass(frozen=True)
class WorkloadMix:
    """Relative weights of operations and the key space."""

    keys: tuple[str, ...] = ("k0", "k1", "k2")
    get: int = 4
    put: int = 4
    cas: int = 2
    delete: int = 0


@dataclass
class _Op:
    op_id: int
    f: str
    key: str
    value: Any
    is_query: bool
    body: Any
    attempts: int = 0
    msg_ids: set[int] = field(default_factory=set)
    deadline: float = 0.0


class KVWorkloadClient:
    """See the module docstring. ``history`` needs ``invoke/ok/fail/info``."""

    def __init__(
        self,
        client_id: str,
        servers: list[str],
        history: Any,
        *,
        ops: int,
        mix: WorkloadMix | None = None,
        timeout_s: float = 0.5,
        max_attempts: int = 20,
        think_s: float = 0.0,
    ) -> None:
        self.client_id = client_id
        self.servers = servers
        self.history = history
        self.remaining = ops
        self.mix = mix or WorkloadMix()
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.think_s = think_s
        self.generation = 0
        self.seq = 0
        self.target = 0
        self.current: _Op | None = None
        self.next_at = 0.0
        self.completed = 0
        self.last_seen: dict[str, Any] = {}
        self.counter = 0

    @property
    def done(self) -> bool:
        return self.remaining == 0 and self.current is None

    @property
    def process_name(self) -> str:
        return f"{self.client_id}.{self.generation}"

    # -- Process ----------------------------------------------------------------------

    def start(self, io: Io) -> None:
        self.target = io.rng.randint(0, len(self.servers) - 1)

    def tick(self, io: Io) -> None:
        op = self.current
        if op is None:
            if self.remaining > 0 and io.now >= self.next_at:
                self._begin(io)
            return
        if io.now >= op.deadline:
            self.target = (self.target + 1) % len(self.servers)
            self._attempt(io, op)

    def receive(self, io: Io, env: Envelope) -> None:
        op = self.current
        if op is None or env.in_reply_to not in op.msg_ids:
            return
        body = env.body
        if isinstance(body, ErrorReply):
            exc = body.exception()
            if isinstance(exc, NotLeader):
                hint = exc.hint
                if hint in self.servers:
                    self.target = self.servers.index(hint)
                else:
                    self.target = (self.target + 1) % len(self.servers)
                self._attempt(io, op, backoff_s=0.05 if hint is None else 0.0)
                return
            self.history.fail(op.op_id, str(exc), time=io.now)
            self._finish(io)
            return
        if isinstance(body, CommandResult) and not op.is_query and body.seq == self.seq:
            self._complete(io, op, body.result)
        elif isinstance(body, QueryResult) and op.is_query:
            self._complete(io, op, body.result)

    # -- operations -------------------------------------------------------------------

    def _begin(self, io: Io) -> None:
        mix = self.mix
        key = io.rng.choice(list(mix.keys))
        roll = io.rng.random() * (mix.get + mix.put + mix.cas + mix.delete)
        self.counter += 1
        fresh = f"{self.client_id}:{self.counter}"
        value: Any
        command: list[Any]
        if roll < mix.get:
            f, value, command, is_query = "get", None, ["get", key], True
        elif roll < mix.get + mix.put:
            f, value, command, is_query = "put", fresh, ["put", key, fresh], False
        elif roll < mix.get + mix.put + mix.cas:
            expected = self.last_seen.get(key)
            f, value, command, is_query = "cas", [expected, fresh], ["cas", key, expected, fresh], False
        else:
            f, value, command, is_query = "delete", None, ["delete", key], False
        body: ClientCommand | ClientQuery
        if not is_query:
            self.seq += 1
            body = ClientCommand(self.client_id, self.seq, command)
        else:
            body = ClientQuery(command)
        op_id = self.history.invoke(self.process_name, f, value, key=key, time=io.now)
        self.current = _Op(op_id, f, key, value, is_query, body)
        self.remaining -= 1
        self._attempt(io, self.current)

    def _attempt(self, io: Io, op: _Op, backoff_s: float = 0.0) -> None:
        if op.attempts >= self.max_attempts:
            if op.is_query:
                self.history.fail(op.op_id, "timeout", time=io.now)
            else:
                self.history.info(op.op_id, "timeout", time=io.now)
                self.generation += 1
            self._finish(io)
            return
        op.attempts += 1
        op.msg_ids.add(io.send(self.servers[self.target], op.body))
        op.deadline = io.now + self.timeout_s + backoff_s

    def _complete(self, io: Io, op: _Op, result: Any) -> None:
        if op.f == "get":
            self.last_seen[op.key] = result
        elif op.f == "put":
            self.last_seen[op.key] = op.value
        elif op.f == "cas" and result:
            self.last_seen[op.key] = op.value[1]
        self.history.ok(op.op_id, result, time=io.now)
        self.completed += 1
        self._finish(io)

    def _finish(self, io: Io) -> None:
        self.current = None
        self.next_at = io.now + self.think_s
