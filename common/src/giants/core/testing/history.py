"""Jepsen-style operation histories: what clients asked for, and what they were told.

This is the history model of Jepsen/Knossos (Kingsbury) used by Herlihy and Wing's
definition of linearizability (TOPLAS 1990, section 3): a history is a sequence of
*invocation* and *response* events. Every event has a process (one client thread of
control), an operation name ``f``, an optional ``key`` and a ``value``:

* ``invoke`` -- the client sent the request (``value`` is the argument: the value to
  write, ``(expected, new)`` for a cas, ``None`` for a read);
* ``ok``     -- it completed, ``value`` is the result (the value read, the cas verdict);
* ``fail``   -- a ``DefiniteError``: it certainly did not take effect;
* ``info``   -- an ``IndefiniteError`` (timeout, lost connection): it may have taken
  effect, at any moment after its invocation, or never. The process that saw it is
  retired (its request may still be in flight), so the client continues under a new
  process id. An operation never completed at all is indeterminate in the same way.

Rules the recorder enforces with ``assert``: a process has at most one outstanding
operation, a retired process never invokes again, and an operation completes at most
once. Time is whatever the caller passes (virtual or wall seconds; omitted, it repeats
the previous event's); nothing here reads a clock. Times are for people and traces:
precedence between operations is the order in which events were *recorded* (the
``index``), as in Knossos, so record each event when it happens (concurrent clients
may stamp times taken a moment earlier, so times need not be sorted).

Values are frozen when recorded (lists become tuples, sets frozensets, bytearrays
bytes) so models can hash them. Histories save to JSON lines, one event per line, and
load back equal (bytes as ``{"$bytes": hex}``, frozensets as ``{"$set": [...]}``).
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from giants.core.errors import DefiniteError

__all__ = [
    "Event",
    "EventType",
    "History",
    "Operation",
    "Status",
    "freeze",
]

EventType = Literal["invoke", "ok", "fail", "info"]
Status = Literal["ok", "fail", "info", "pending"]
ProcessId = int | str
_COMPLETIONS = ("ok", "fail", "info")
_SAME: Any = object()  # ok() without a value: the result is the invocation's value


class _TraceSink(Protocol):
    def event(self, t: float, node: str, kind: str, **fields: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history. ``op`` is the index of the invocation it belongs to."""

    index: int
    type: EventType
    process: ProcessId
    f: str
    key: Hashable
    value: Any
    time: float
    op: int
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion (if any).

    ``value`` is the argument, ``output`` the result of an ``ok`` (``None`` otherwise).
    ``complete_index`` / ``complete_time`` are ``None`` when the operation never completed.
    """

    id: int
    process: ProcessId
    f: str
    key: Hashable
    value: Any
    output: Any
    status: Status
    invoke_index: int
    complete_index: int | None
    invoke_time: float
    complete_time: float | None
    error: str | None = None

    @property
    def indeterminate(self) -> bool:
        """True for ``info`` and never-completed operations: they may have happened."""
        return self.status in ("info", "pending")

    def describe(self) -> str:
        """A one-line human description, e.g. ``#12 p3 read k1 -> 5 [t=1.0..1.5]``."""
        key = "" if self.key is None else f" {self.key!r}"
        arg = "" if self.value is None else f" {self.value!r}"
        if self.status == "ok":
            res = f" -> {self.output!r}"
        else:
            res = f" ({self.status}{': ' + self.error if self.error else ''})"
        end = "..." if self.complete_time is None else f"{self.complete_time:g}"
        return f"#{self.id} p{self.process} {self.f}{key}{arg}{res} [t={self.invoke_time:g}..{end}]"


def freeze(value: Any) -> Any:
    """Make a value hashable the way the recorder stores it (lists -> tuples, ...)."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(v) for v in value)
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return {k: freeze(v) for k, v in value.items()}
    return value


class History:
    """An append-only recorder of invoke / ok / fail / info events.

    ``trace``, if given, receives one ``op`` event per history event (see
    ``giants.core.trace``), so client operations show up in the space-time diagram.
    """

    def __init__(self, *, trace: _TraceSink | None = None) -> None:
        self._events: list[Event] = []
        self._outstanding: dict[ProcessId, int] = {}   # process -> op id
        self._completed: dict[int, int] = {}           # op id -> completion index
        self._retired: set[ProcessId] = set()
        self._trace = trace

    # -- recording -------------------------------------------------------------------

    def invoke(
        self, process: ProcessId, f: str, value: Any = None, *,
        key: Hashable = None, time: float | None = None,
    ) -> int:
        """Record an invocation; returns its op id (the event index)."""
        assert process not in self._outstanding, (
            f"process {process!r} invoked {f!r} while op #{self._outstanding[process]} "
            "is outstanding"
        )
        assert process not in self._retired, (
            f"process {process!r} is retired (it saw an info); use a new process id"
        )
        op = len(self._events)
        self._append("invoke", process, f, key, freeze(value), time, op, None)
        self._outstanding[process] = op
        return op

    def ok(self, op: int, value: Any = _SAME, *, time: float | None = None) -> None:
        """Record a successful completion with result ``value`` (default: the argument)."""
        inv = self._complete(op)
        result = inv.value if value is _SAME else freeze(value)
        self._append("ok", inv.process, inv.f, inv.key, result, time, op, None)

    def fail(
        self, op: int, value: Any = None, *, time: float | None = None, error: str | None = None
    ) -> None:
        """Record a definite failure: the operation did not take effect."""
        inv = self._complete(op)
        self._append("fail", inv.process, inv.f, inv.key, freeze(value), time, op, error)

    def info(
        self, op: int, value: Any = None, *, time: float | None = None, error: str | None = None
    ) -> None:
        """Record an indefinite outcome; the process is retired from now on."""
        inv = self._complete(op)
        self._retired.add(inv.process)
        self._append("info", inv.process, inv.f, inv.key, freeze(value), time, op, error)

    def error(self, op: int, exc: BaseException, *, time: float | None = None) -> EventType:
        """Complete ``op`` from an exception: ``DefiniteError`` -> fail, anything else -> info.

        Anything that is not known to be definite may have happened, so it is ``info``.
        Returns the event type recorded.
        """
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, DefiniteError):
            self.fail(op, time=time, error=text)
            return "fail"
        self.info(op, time=time, error=text)
        return "info"

    def _complete(self, op: int) -> Event:
        assert 0 <= op < len(self._events) and self._events[op].type == "invoke", (
            f"#{op} is not an invocation"
        )
        assert op not in self._completed, f"op #{op} completed twice"
        inv = self._events[op]
        del self._outstanding[inv.process]
        self._completed[op] = len(self._events)
        return inv

    def _append(
        self, type_: EventType, process: ProcessId, f: str, key: Hashable, value: Any,
        time: float | None, op: int, error: str | None,
    ) -> None:
        t = (self._events[-1].time if self._events else 0.0) if time is None else float(time)
        ev = Event(len(self._events), type_, process, f, key, value, t, op, error)
        self._events.append(ev)
        if self._trace is not None:
            self._trace.event(t, f"client-{process}", "op", what=type_, f=f, key=key,
                              value=value, op=op)

    # -- reading ---------------------------------------------------------------------

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    def outstanding(self) -> dict[ProcessId, int]:
        """Processes with an operation in flight -> its op id."""
        return dict(self._outstanding)

    def operations(self) -> list[Operation]:
        """Every invocation paired with its completion, in invocation order."""
        out = []
        for inv in self._events:
            if inv.type != "invoke":
                continue
            done_at = self._completed.get(inv.index)
            if done_at is None:
                out.append(Operation(inv.index, inv.process, inv.f, inv.key, inv.value, None,
                                     "pending", inv.index, None, inv.time, None))
                continue
            done = self._events[done_at]
            status: Status = "ok" if done.type == "ok" else "fail" if done.type == "fail" else "info"
            output = done.value if status == "ok" else None
            out.append(Operation(inv.index, inv.process, inv.f, inv.key, inv.value, output,
                                 status, inv.index, done.index, inv.time, done.time,
                                 done.error))
        return out

    def with_result(self, op: int, value: Any) -> History:
        """A copy in which the ``ok`` of operation ``op`` reports ``value`` instead: the
        mutation that checker tests use to turn a correct history into a wrong one."""
        out = History()
        for e in self._events:
            if e.type == "invoke":
                out.invoke(e.process, e.f, e.value, key=e.key, time=e.time)
            elif e.type == "ok":
                out.ok(e.op, value if e.op == op else e.value, time=e.time)
            else:
                complete = out.fail if e.type == "fail" else out.info
                complete(e.op, e.value, time=e.time, error=e.error)
        assert op in out._completed and out._events[out._completed[op]].type == "ok", (
            f"op #{op} has no ok to change")
        return out

    # -- persistence -----------------------------------------------------------------

    def to_jsonl(self) -> str:
        """The history as JSON lines (keys sorted, so equal histories give equal text)."""
        lines = []
        for e in self._events:
            rec = {"index": e.index, "type": e.type, "process": e.process, "f": e.f,
                   "key": _to_json(e.key), "value": _to_json(e.value), "time": e.time,
                   "op": e.op}
            if e.error is not None:
                rec["error"] = e.error
            lines.append(json.dumps(rec, sort_keys=True, separators=(",", ":")))
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_jsonl(cls, text: str) -> History:
        """Replay JSON lines through the recorder (so the same rules are checked).

        Raises ``ValueError`` on a line that is not a history event.
        """
        h = cls()
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                h._replay(rec)
            except (ValueError, KeyError, TypeError, AssertionError) as exc:
                raise ValueError(f"line {n}: not a history event: {exc}") from None
        return h

    def _replay(self, rec: dict[str, Any]) -> None:
        type_, time = rec["type"], float(rec["time"])
        value = _from_json(rec.get("value"))
        if type_ == "invoke":
            op = self.invoke(rec["process"], rec["f"], value, key=_from_json(rec.get("key")),
                             time=time)
            if op != rec["index"]:
                raise ValueError(f"index {rec['index']} out of sequence (expected {op})")
        elif type_ == "ok":
            self.ok(rec["op"], value, time=time)
        elif type_ in ("fail", "info"):
            complete = self.fail if type_ == "fail" else self.info
            complete(rec["op"], value, time=time, error=rec.get("error"))
        else:
            raise ValueError(f"unknown event type {type_!r}")

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_jsonl())

    @classmethod
    def load(cls, path: str) -> History:
        with open(path, encoding="utf-8") as f:
            return cls.from_jsonl(f.read())


def _to_json(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_to_json(x) for x in v]
    if isinstance(v, bytes):
        return {"$bytes": v.hex()}
    if isinstance(v, frozenset):
        return {"$set": sorted((_to_json(x) for x in v), key=repr)}
    if isinstance(v, dict):
        return {str(k): _to_json(x) for k, x in v.items()}
    return v


def _from_json(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_from_json(x) for x in v)
    if isinstance(v, dict):
        if set(v) == {"$bytes"}:
            return bytes.fromhex(v["$bytes"])
        if set(v) == {"$set"}:
            return frozenset(_from_json(x) for x in v["$set"])
        return {k: _from_json(x) for k, x in v.items()}
    return v
