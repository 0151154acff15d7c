"""The sans-I/O process contract: how every deciding core is written and hosted.

A *process* is a plain object holding one node's protocol state. It never touches
sockets, clocks, randomness, threads or files. The host (the trio driver in
``giants.core.host`` or the simulator in ``giants.core.sim``) calls it with:

* ``start(io)``            once, after construction (fresh or recovered);
* ``receive(io, env)``     for every envelope addressed to it;
* ``tick(io)``             every ``tick_s`` seconds of (real or virtual) time.

Everything the process wants done goes into ``io`` as data: durable writes
(``io.put`` / ``io.delete`` / ``io.delete_range``), messages (``io.send`` /
``io.reply``), trace events and probes. After each call the host carries the effects
out in the **contract order: every persist of the call is durable before any message
of the call leaves**. So "persist, then send, then reply" holds whenever a process
records its durable change before it records the reply that depends on it (in one call).

A process is built by a *factory* ``Callable[[Durable], Process]`` from the durable
state that survived (an empty ``Durable`` on first boot). On a crash the host drops the
object and builds a new one from what was persisted; nothing else survives.

Randomness and time are inputs: ``io.now`` (seconds, float) and ``io.rng`` (seeded by
the host; a ``random.Random``-compatible object).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from giants.core.envelope import Envelope

__all__ = [
    "Process",
    "ProcessFactory",
    "Io",
    "Rng",
    "Put",
    "Delete",
    "DeleteRange",
    "PersistOp",
    "Durable",
    "TraceEvent",
]

Key = int | str


@dataclass(frozen=True, slots=True)
class Put:
    ns: str
    key: Key
    value: Any


@dataclass(frozen=True, slots=True)
class Delete:
    ns: str
    key: Key


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Delete every integer key ``k`` of ``ns`` with ``lo <= k < hi`` (``hi=None``: no bound)."""

    ns: str
    lo: int
    hi: int | None


PersistOp = Put | Delete | DeleteRange


class Durable:
    """The durable state a process is rebuilt from: namespaces of key -> value.

    Values are anything msgpack can carry. Keys within a namespace are either all ints
    (logs) or all strs. The host applies ``PersistOp``s to it in order.
    """

    def __init__(self, data: dict[str, dict[Key, Any]] | None = None) -> None:
        self._data: dict[str, dict[Key, Any]] = data if data is not None else {}

    def get(self, ns: str, key: Key, default: Any = None) -> Any:
        return self._data.get(ns, {}).get(key, default)

    def namespace(self, ns: str) -> dict[Key, Any]:
        """A copy of one namespace."""
        return dict(self._data.get(ns, {}))

    def items(self, ns: str) -> list[tuple[Key, Any]]:
        """The namespace's items sorted by key."""
        return sorted(self._data.get(ns, {}).items(), key=lambda kv: kv[0])

    def namespaces(self) -> Iterator[str]:
        return iter(sorted(self._data))

    def apply(self, op: PersistOp) -> None:
        if isinstance(op, Put):
            self._data.setdefault(op.ns, {})[op.key] = op.value
        elif isinstance(op, Delete):
            self._data.get(op.ns, {}).pop(op.key, None)
        else:
            space = self._data.get(op.ns)
            if space:
                for k in [k for k in space if isinstance(k, int) and k >= op.lo
                          and (op.hi is None or k < op.hi)]:
                    del space[k]

    def copy(self) -> Durable:
        return Durable({ns: dict(space) for ns, space in self._data.items()})

    def is_empty(self) -> bool:
        return not any(self._data.values())


class Rng(Protocol):
    def random(self) -> float: ...
    def randint(self, a: int, b: int) -> int: ...
    def uniform(self, a: float, b: float) -> float: ...
    def choice(self, seq: Any) -> Any: ...
    def shuffle(self, x: list[Any]) -> None: ...


@dataclass(slots=True)
class TraceEvent:
    node: str
    kind: str
    fields: dict[str, Any]


@dataclass
class Io:
    """The effect collector handed to a process for one call. Pure data, no I/O.

    ``buggify_fn`` and ``probe_fn`` are set by the simulator; on a real host buggify is
    always False and probes only count.
    """

    node_id: str
    now: float
    rng: Rng
    next_msg_id: Callable[[], int]
    buggify_fn: Callable[[str], bool] | None = None
    probe_fn: Callable[[str], None] | None = None
    persists: list[PersistOp] = field(default_factory=list)
    sends: list[Envelope] = field(default_factory=list)
    traces: list[TraceEvent] = field(default_factory=list)

    # -- messages ---------------------------------------------------------------------

    def send(self, target: str, body: Any, *, in_reply_to: int | None = None) -> int:
        """Queue ``body`` for ``target``; returns the new message id."""
        msg_id = self.next_msg_id()
        self.sends.append(Envelope(self.node_id, target, msg_id, in_reply_to, body))
        return msg_id

    def reply(self, request: Envelope, body: Any) -> int:
        """Queue ``body`` as the reply to ``request``."""
        return self.send(request.source, body, in_reply_to=request.msg_id)

    # -- durability -------------------------------------------------------------------

    def put(self, ns: str, key: Key, value: Any) -> None:
        self.persists.append(Put(ns, key, value))

    def delete(self, ns: str, key: Key) -> None:
        self.persists.append(Delete(ns, key))

    def delete_range(self, ns: str, lo: int, hi: int | None = None) -> None:
        self.persists.append(DeleteRange(ns, lo, hi))

    # -- observation and fault points -------------------------------------------------

    def trace(self, kind: str, **fields: Any) -> None:
        """Record a state change (role change, commit, decision) for the trace."""
        self.traces.append(TraceEvent(self.node_id, kind, fields))

    def probe(self, name: str) -> None:
        """Mark that a rare branch ran; simulation sweeps report probes that never fired."""
        if self.probe_fn is not None:
            self.probe_fn(name)

    def buggify(self, site: str) -> bool:
        """True when the simulator decides to misbehave at ``site``; never on a real host."""
        return self.buggify_fn(site) if self.buggify_fn is not None else False


class Process(Protocol):
    """A sans-I/O node core. See the module docstring for the contract."""

    def start(self, io: Io) -> None: ...

    def receive(self, io: Io, env: Envelope) -> None: ...

    def tick(self, io: Io) -> None: ...


ProcessFactory = Callable[[Durable], Process]
